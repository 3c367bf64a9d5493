"""Every RPC of ResidencyService and PolicyService is implemented by the router's servicers
(not inherited from the generated base class, which answers UNIMPLEMENTED)."""

from __future__ import annotations

import pytest

from domicile.router.service import PolicyServicer, ResidencyServicer
from domicile.v1 import policy_pb2, policy_pb2_grpc, residency_pb2, residency_pb2_grpc


@pytest.mark.parametrize(
    ("descriptor", "servicer", "base"),
    [
        (residency_pb2.DESCRIPTOR.services_by_name["ResidencyService"], ResidencyServicer,
         residency_pb2_grpc.ResidencyServiceServicer),
        (policy_pb2.DESCRIPTOR.services_by_name["PolicyService"], PolicyServicer, policy_pb2_grpc.PolicyServiceServicer),
    ],
)
def test_every_rpc_is_implemented(descriptor, servicer, base) -> None:
    methods = [m.name for m in descriptor.methods]
    assert methods, descriptor.full_name
    missing = [name for name in methods if getattr(servicer, name) is getattr(base, name)]
    assert not missing, f"{descriptor.full_name}: not implemented: {missing}"
