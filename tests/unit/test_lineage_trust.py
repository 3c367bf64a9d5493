"""NamespaceOwnership: which job namespaces a caller owns (lineage/trust.py)."""

from __future__ import annotations

import pytest

from domicile.config import SettingsError, load_settings
from domicile.lineage.trust import NamespaceOwnership
from domicile.security.context import Caller


def caller(subject: str, **claims: tuple[str, ...]) -> Caller:
    return Caller(subject, claims=tuple(sorted(claims.items())))


def test_a_subject_owns_the_namespace_of_its_own_name_and_nothing_else_by_default() -> None:
    owners = NamespaceOwnership({})
    assert owners.owns(caller("airflow-eu"), "airflow-eu/daily_rollup")
    assert not owners.owns(caller("airflow-eu"), "airflow-us/daily_rollup")
    # A job without "/" is in namespace "default".
    assert not owners.owns(caller("airflow-eu"), "daily_rollup")
    assert owners.owns(caller("default"), "daily_rollup")
    # The subject is a name, not a pattern.
    assert not NamespaceOwnership({}).owns(caller("air*"), "airflow-eu/x")
    assert NamespaceOwnership({}).owns(caller("air*"), "air*/x")


def test_the_mapping_grants_patterns_to_subjects_and_to_claims() -> None:
    owners = NamespaceOwnership(
        {"spark-svc": ["spark-*", "default"], "claim:team=payments": ["airflow-in"], "gateway": ["*"]}
    )
    assert owners.owns(caller("spark-svc"), "spark-eu/job") and owners.owns(caller("spark-svc"), "nightly")
    assert owners.owns(caller("spark-svc"), "spark-svc/job")  # its own name, still
    assert not owners.owns(caller("spark-svc"), "airflow-in/job")
    assert owners.owns(caller("bob", team=("payments",)), "airflow-in/settle")
    assert owners.owns(caller("bob", team=("risk", "payments")), "airflow-in/settle")
    assert not owners.owns(caller("bob", team=("risk",)), "airflow-in/settle")
    assert owners.owns(caller("gateway"), "anything/at-all") and owners.owns(caller("gateway"), "plain")


def test_the_dev_principal_owns_every_namespace() -> None:
    assert NamespaceOwnership({}, dev_subject="dev").owns(caller("dev"), "airflow-eu/x")
    assert not NamespaceOwnership({}).owns(caller("dev"), "airflow-eu/x")


@pytest.mark.parametrize(
    ("owners", "problem"),
    [
        ({"svc": []}, "at least one"),
        ({"svc": [""]}, "at least one"),
        ({"claim:team": ["x"]}, "claim:NAME=VALUE"),
        ({"claim:=x": ["x"]}, "claim:NAME=VALUE"),
        ({"": ["x"]}, "token subject"),
    ],
)
def test_bad_owner_settings_are_refused_naming_the_setting(owners, problem) -> None:
    with pytest.raises(SettingsError, match=r"lineage\.namespace_owners") as info:
        load_settings(lineage={"namespace_owners": owners})
    assert problem in str(info.value)
