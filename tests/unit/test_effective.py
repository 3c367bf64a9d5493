"""EffectiveIndex: the propagation rules of effective attributes, case by case."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domicile.catalog.model import Change, ChangeKind, Dataset, Edge, EdgeKey, EdgeRow, Field, label_matches
from domicile.router.effective import UNDESCRIBED, EffectiveIndex, NodeKind

DECLASSIFIERS = {"anonymize": ("PII",), "aggregate": ("PII", "FINANCIAL.PAYMENT")}
UNAPPROVED_JOB = "rogue/launder"  # claims transforms no policy granted it


def removes(transform: str, job: str, label: str) -> bool:
    granted = job != UNAPPROVED_JOB
    return granted and any(label_matches(removed, label) for removed in DECLASSIFIERS.get(transform, ()))


def ds(id: str, labels: tuple[str, ...] = (), origins: tuple[str, ...] = (), **kwargs) -> Dataset:
    return Dataset.create(id, classifications=labels, origins=origins, **kwargs)


def edge(input: str, output: str, transform: str = "", job: str = "job") -> Edge:
    return Edge(input=input, output=output, job=job, transform=transform)


def labels(index: EffectiveIndex, id: str) -> dict[str, tuple[str, ...]]:
    attributes = index.get(id)
    assert attributes is not None
    return dict(attributes.classifications)


def origins(index: EffectiveIndex, id: str) -> dict[str, tuple[str, ...]]:
    attributes = index.get(id)
    assert attributes is not None
    return dict(attributes.origins)


def test_own_labels_include_field_labels_and_locations_are_kept() -> None:
    index = EffectiveIndex(removes)
    index.set_dataset(
        ds("a", ("FINANCIAL",), ("DE",), locations=("aws:eu-central-1",), fields=(Field("email", ("PII.CONTACT",)),))
    )
    attributes = index.get("a")
    assert attributes is not None
    assert dict(attributes.classifications) == {"FINANCIAL": ("a",), "PII.CONTACT": ("a",)}
    assert dict(attributes.origins) == {"DE": ("a",)}
    assert attributes.locations == ("aws:eu-central-1",)


def test_unknown_and_deleted_datasets_have_no_attributes() -> None:
    index = EffectiveIndex(removes)
    assert index.get("nope") is None
    index.set_dataset(ds("a", ("PII",)))
    assert "a" in index and len(index) == 1
    index.remove_dataset("a")
    assert index.get("a") is None and "a" not in index
    assert list(index.datasets()) == []


def test_labels_and_origins_follow_lineage_with_their_paths() -> None:
    index = EffectiveIndex.build(
        [ds("src", ("FINANCIAL.PAYMENT",), ("IN",)), ds("mid"), ds("out", (), ("DE",))],
        [edge("src", "mid"), edge("mid", "out")],
        removes,
    )
    assert labels(index, "out") == {"FINANCIAL.PAYMENT": ("src", "mid", "out")}
    assert origins(index, "out") == {"DE": ("out",), "IN": ("src", "mid", "out")}


def test_declassifier_removes_descendant_labels_but_never_origins() -> None:
    index = EffectiveIndex.build(
        [ds("src", ("PII.CONTACT", "FINANCIAL.PAYMENT"), ("DE",)), ds("anon")],
        [edge("src", "anon", "anonymize")],
        removes,
    )
    assert labels(index, "anon") == {"FINANCIAL.PAYMENT": ("src", "anon")}
    assert origins(index, "anon") == {"DE": ("src", "anon")}


def test_declassifier_does_not_remove_the_outputs_own_labels() -> None:
    index = EffectiveIndex.build(
        [ds("src", ("PII",)), ds("out", ("PII.NAME",))], [edge("src", "out", "anonymize")], removes
    )
    assert labels(index, "out") == {"PII.NAME": ("out",)}


def test_a_plain_edge_beside_a_declassifying_one_still_carries_the_label() -> None:
    index = EffectiveIndex.build(
        [ds("src", ("PII",)), ds("out")],
        [edge("src", "out", "anonymize", job="anon"), edge("src", "out", "", job="copy")],
        removes,
    )
    assert labels(index, "out") == {"PII": ("src", "out")}
    index.remove_edge(EdgeKey("src", "out", "copy"))
    assert labels(index, "out") == {}


def test_the_recorded_path_is_a_shortest_one() -> None:
    index = EffectiveIndex(removes)
    for id in ("a", "b", "c", "d"):
        index.set_dataset(ds(id, ("PII",) if id == "a" else ()))
    index.add_edge(edge("a", "b"))
    index.add_edge(edge("b", "c"))
    index.add_edge(edge("c", "d"))
    assert labels(index, "d") == {"PII": ("a", "b", "c", "d")}
    index.add_edge(edge("a", "d", job="shortcut"))
    assert labels(index, "d") == {"PII": ("a", "d")}
    index.remove_edge(EdgeKey("a", "d", "shortcut"))
    assert labels(index, "d") == {"PII": ("a", "b", "c", "d")}


def test_a_cycle_without_a_source_carries_nothing_and_with_one_carries_it_everywhere() -> None:
    index = EffectiveIndex.build(
        [ds("a"), ds("b"), ds("c")],
        [edge("a", "b"), edge("b", "c"), edge("c", "a"), edge("c", "c", job="self")],
        removes,
    )
    assert all(labels(index, id) == {} for id in "abc")
    index.set_dataset(ds("b", ("PII",), ("FR",)))
    assert labels(index, "a") == {"PII": ("b", "c", "a")}
    assert labels(index, "c") == {"PII": ("b", "c")}
    assert origins(index, "a") == {"FR": ("b", "c", "a")}


def test_removing_the_source_of_a_cycle_empties_the_cycle() -> None:
    # The least fixpoint: members must not keep the label by feeding it to each other.
    index = EffectiveIndex.build(
        [ds("src", ("PII",)), ds("a"), ds("b"), ds("after")],
        [edge("src", "a"), edge("a", "b"), edge("b", "a"), edge("b", "after")],
        removes,
    )
    assert labels(index, "after") == {"PII": ("src", "a", "b", "after")}
    index.remove_edge(EdgeKey("src", "a", "job"))
    assert labels(index, "a") == {} and labels(index, "b") == {} and labels(index, "after") == {}


def test_a_deleted_dataset_stops_contributing_but_its_edges_still_carry_upstream_labels() -> None:
    index = EffectiveIndex.build(
        [ds("src", ("FINANCIAL",)), ds("mid", ("PII",)), ds("out")],
        [edge("src", "mid"), edge("mid", "out")],
        removes,
    )
    index.remove_dataset("mid")
    assert labels(index, "out") == {"FINANCIAL": ("src", "mid", "out")}


def test_an_edge_to_datasets_the_index_does_not_know_still_propagates() -> None:
    index = EffectiveIndex(removes)
    index.set_dataset(ds("src", ("PII",)))
    index.add_edge(edge("src", "placeholder"))
    index.add_edge(edge("placeholder", "out"))
    assert index.get("placeholder") is None
    index.set_dataset(ds("out"))
    assert labels(index, "out") == {"PII": ("src", "placeholder", "out")}


def test_replacing_an_edges_transform_recomputes_downstream() -> None:
    index = EffectiveIndex.build([ds("src", ("PII",)), ds("out")], [edge("src", "out")], removes)
    index.add_edge(edge("src", "out", "anonymize"))
    assert labels(index, "out") == {}


def test_a_location_change_updates_the_view_without_touching_labels() -> None:
    index = EffectiveIndex.build([ds("src", ("PII",)), ds("out")], [edge("src", "out")], removes)
    index.set_dataset(ds("src", ("PII",), locations=("gcp:europe-west6",)))
    attributes = index.get("src")
    assert attributes is not None and attributes.locations == ("gcp:europe-west6",)
    assert labels(index, "out") == {"PII": ("src", "out")}


def test_views_are_cached_until_a_change_reaches_the_dataset() -> None:
    index = EffectiveIndex.build([ds("src", ("PII",)), ds("out"), ds("other")], [edge("src", "out")], removes)
    out, other = index.get("out"), index.get("other")
    assert index.get("out") is out
    index.set_dataset(ds("src", ("HEALTH",)))
    assert index.get("other") is other
    assert index.get("out") is not out
    assert labels(index, "out") == {"HEALTH": ("src", "out")}


def test_a_copy_changes_independently_of_its_original() -> None:
    index = EffectiveIndex.build([ds("src", ("PII",)), ds("mid"), ds("out")], [edge("src", "mid")], removes)
    mid = index.get("mid")
    twin = index.copy()
    twin.add_edge(edge("mid", "out"))
    twin.set_dataset(ds("src", ("HEALTH",)))
    twin.add_edge(edge("src", "mid", "anonymize", job="other"))
    assert labels(twin, "out") == {"HEALTH": ("src", "mid", "out")}
    # The original answers exactly as before, its cached views included.
    assert index.get("mid") is mid and labels(index, "out") == {}
    assert index.edges_into("mid") == [("src", "job", "")]
    index.remove_edge(EdgeKey("src", "mid", "job"))
    assert labels(index, "mid") == {} and labels(twin, "mid") == {"HEALTH": ("src", "mid")}


def test_set_declassifier_recomputes_only_when_removals_change() -> None:
    index = EffectiveIndex.build([ds("src", ("PII",)), ds("out")], [edge("src", "out", "mask")], removes)
    assert labels(index, "out") == {"PII": ("src", "out")}
    index.set_declassifier(lambda transform, job, label: transform == "mask" and label_matches("PII", label))
    assert labels(index, "out") == {}
    view = index.get("out")
    index.set_declassifier(lambda transform, job, label: transform == "mask")
    assert index.get("out") is view  # same answers for every label in play: nothing recomputed
    index.set_declassifier(removes)
    assert labels(index, "out") == {"PII": ("src", "out")}


def test_apply_replays_a_change_feed_batch() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    t1 = datetime(2026, 1, 2, tzinfo=UTC)
    old = Edge("src", "out", "job", transform="", record_time=t0)
    new = Edge("src", "out", "job", transform="anonymize", record_time=t1)
    index = EffectiveIndex(removes)
    index.apply(
        [
            Change(1, ChangeKind.DATASET_UPSERTED, t0, dataset=ds("src", ("PII", "FINANCIAL"))),
            Change(1, ChangeKind.DATASET_UPSERTED, t0, dataset=ds("out")),
            Change(2, ChangeKind.EDGE_ADDED, t0, edge=old),
        ]
    )
    assert labels(index, "out") == {"FINANCIAL": ("src", "out"), "PII": ("src", "out")}
    # A run with another transform: the new edge is added, then the old one ends; the end of
    # the old version must not remove the new one.
    ended = Edge("src", "out", "job", transform="", record_time=t0, end_time=t1)
    index.apply([Change(3, ChangeKind.EDGE_ADDED, t1, edge=new), Change(3, ChangeKind.EDGE_ENDED, t1, edge=ended)])
    assert labels(index, "out") == {"FINANCIAL": ("src", "out")}
    index.apply(
        [
            Change(
                4, ChangeKind.EDGE_ENDED, t1, edge=Edge("src", "out", "job", "anonymize", record_time=t1, end_time=t1)
            ),
            Change(4, ChangeKind.DATASET_DELETED, t1, dataset_id="src"),
        ]
    )
    assert labels(index, "out") == {} and index.get("src") is None


def test_a_snapshot_edge_survives_the_replay_of_an_older_versions_end() -> None:
    # A paged snapshot may already hold the version of an edge that was ended and recorded
    # again (same transform) after the snapshot's revision. Snapshot rows carry no record time,
    # so the replayed end of the older version removes it -- and the replayed addition of the
    # newer one, which comes after it in the feed, puts it back.
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    t1 = datetime(2026, 1, 2, tzinfo=UTC)
    index = EffectiveIndex.from_snapshot(
        [ds("src", ("PII",)).residency_row(), ds("out").residency_row()], [EdgeRow("src", "out", "job", "")], removes
    )
    assert labels(index, "out") == {"PII": ("src", "out")}
    index.apply(
        [
            Change(2, ChangeKind.EDGE_ENDED, t1, edge=Edge("src", "out", "job", "", record_time=t0, end_time=t1)),
            Change(3, ChangeKind.EDGE_ADDED, t1, edge=Edge("src", "out", "job", "", record_time=t1)),
        ]
    )
    assert labels(index, "out") == {"PII": ("src", "out")}
    # And the end of the version the snapshot held removes it.
    index = EffectiveIndex.from_snapshot(
        [ds("src", ("PII",)).residency_row(), ds("out").residency_row()], [EdgeRow("src", "out", "job", "")], removes
    )
    index.apply([Change(2, ChangeKind.EDGE_ENDED, t1, edge=Edge("src", "out", "job", "", record_time=t0, end_time=t1))])
    assert labels(index, "out") == {}


def test_apply_rejects_a_change_without_its_payload_after_propagating_the_ones_before() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    index = EffectiveIndex.build([ds("src", ("PII",)), ds("out")], [], removes)
    with pytest.raises(ValueError, match="without an edge"):
        index.apply(
            [Change(1, ChangeKind.EDGE_ADDED, t0, edge=edge("src", "out")), Change(2, ChangeKind.EDGE_ADDED, t0)]
        )
    assert labels(index, "out") == {"PII": ("src", "out")}


def test_ended_edges_are_not_indexed() -> None:
    index = EffectiveIndex(removes)
    ended = Edge("a", "b", "job", end_time=datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="only current edges"):
        index.add_edge(ended)


def test_deleting_a_source_keeps_derived_data_constrained() -> None:
    """A deleted source's copies do not become unclassified: they carry UNDESCRIBED."""
    index = EffectiveIndex.build(
        [ds("src", ("FINANCIAL.PAYMENT",), ("IN",)), ds("copy")], [edge("src", "copy")], removes
    )
    assert origins(index, "copy") == {"IN": ("src", "copy")}
    index.remove_dataset("src")
    assert index.get("src") is None
    assert origins(index, "copy") == {UNDESCRIBED: ("src", "copy")}
    # Describing it again replaces the doubt with what it really holds.
    index.set_dataset(ds("src", ("FINANCIAL.PAYMENT",), ("IN",)))
    assert origins(index, "copy") == {"IN": ("src", "copy")}


def test_placeholders_and_unknown_inputs_are_undescribed() -> None:
    index = EffectiveIndex.build([ds("out")], [], removes)
    assert origins(index, "out") == {}
    index.set_dataset(ds("ph", placeholder=True))
    index.add_edge(edge("ph", "out", transform="anonymize"))
    assert index.get("ph") is None and "ph" not in index
    assert origins(index, "out") == {UNDESCRIBED: ("ph", "out")}, "no transform removes the doubt"
    index.add_edge(edge("never-registered", "other"))
    index.set_dataset(ds("other"))
    assert origins(index, "other") == {UNDESCRIBED: ("never-registered", "other")}


def placeholder(id: str) -> Dataset:
    return Dataset.create(id, placeholder=True)


def test_a_derived_placeholder_inherits_over_two_hops_and_says_so() -> None:
    index = EffectiveIndex.build(
        [ds("src", ("PII.CONTACT",), ("DE",)), placeholder("p"), placeholder("q")],
        [edge("src", "p"), edge("p", "q")],
        removes,
    )
    view = index.get("q")
    assert view is not None and view.inherited_only and view.locations == ()
    assert labels(index, "q") == {"PII.CONTACT": ("src", "p", "q")}
    assert origins(index, "q") == {"DE": ("src", "p", "q")}
    assert not index.get("src").inherited_only
    assert index.kind("p") is NodeKind.DERIVED and "p" in index and set(index.datasets()) == {"src", "p", "q"}


def test_a_declassifier_lifts_labels_from_a_derived_placeholder_only_for_a_granted_job() -> None:
    index = EffectiveIndex.build(
        [ds("src", ("PII.CONTACT", "FINANCIAL.PAYMENT"), ("DE",)), placeholder("agg"), placeholder("anon")],
        [edge("src", "agg", "aggregate"), edge("src", "anon", "anonymize")],
        removes,
    )
    assert labels(index, "agg") == {} and origins(index, "agg") == {"DE": ("src", "agg")}
    assert labels(index, "anon") == {"FINANCIAL.PAYMENT": ("src", "anon")}
    # The same claim from a job nobody granted the transform is a plain copy.
    index.add_edge(edge("src", "agg", "aggregate", job=UNAPPROVED_JOB))
    assert labels(index, "agg") == {"FINANCIAL.PAYMENT": ("src", "agg"), "PII.CONTACT": ("src", "agg")}


def test_granting_a_job_later_honours_its_past_runs() -> None:
    index = EffectiveIndex.build(
        [ds("src", ("PII",)), placeholder("out")], [edge("src", "out", "anonymize", job="team/anon")], lambda *_: False
    )
    assert labels(index, "out") == {"PII": ("src", "out")}
    index.set_declassifier(lambda transform, job, label: job == "team/anon" and removes(transform, job, label))
    assert labels(index, "out") == {}
    index.set_declassifier(lambda transform, job, label: job == "someone/else")
    assert labels(index, "out") == {"PII": ("src", "out")}


def test_a_lineage_root_nobody_described_and_everything_below_it_are_undescribed() -> None:
    index = EffectiveIndex.build(
        [placeholder("root"), placeholder("mid"), ds("src", ("PII",))],
        [edge("root", "mid"), edge("src", "mid"), edge("mid", "out")],
        removes,
    )
    assert index.get("root") is None and index.kind("root") is NodeKind.UNDESCRIBED_PLACEHOLDER
    assert origins(index, "mid") == {UNDESCRIBED: ("root", "mid")}
    assert labels(index, "mid") == {"PII": ("src", "mid")}
    # "out" was never described nor created as a placeholder: undescribed, like a deleted one.
    assert index.get("out") is None and index.kind("out") is NodeKind.DELETED
    assert index.kind("never-mentioned") is NodeKind.UNKNOWN


def test_a_cycle_of_placeholders_nothing_enters_is_undescribed_until_described_data_flows_in() -> None:
    index = EffectiveIndex.build(
        [placeholder("a"), placeholder("b"), ds("src", ("PII",), ("DE",))], [edge("a", "b"), edge("b", "a")], removes
    )
    assert index.get("a") is None and index.get("b") is None
    index.add_edge(edge("src", "a"))
    assert labels(index, "b") == {"PII": ("src", "a", "b")} and origins(index, "a") == {"DE": ("src", "a")}
    # Cutting the cycle open leaves "a" a root again and "b" derived from it.
    index.remove_edge(EdgeKey("src", "a", "job"))
    index.remove_edge(EdgeKey("b", "a", "job"))
    assert index.get("a") is None
    assert origins(index, "b") == {UNDESCRIBED: ("a", "b")} and index.get("b").inherited_only


def test_splitting_a_cycle_of_placeholders_recasts_members_that_did_not_change_value() -> None:
    index = EffectiveIndex.build([placeholder("a"), placeholder("b")], [edge("a", "b"), edge("b", "a")], removes)
    assert index.get("a") is None and index.get("b") is None
    index.remove_edge(EdgeKey("a", "b", "job"))  # "b" is now a root, "a" derived from it
    assert index.get("b") is None
    assert origins(index, "a") == {UNDESCRIBED: ("b", "a")} and index.kind("a") is NodeKind.DERIVED


def test_a_deleted_dataset_stays_undescribed_whatever_its_inputs() -> None:
    index = EffectiveIndex.build(
        [ds("src", ("PII",)), ds("copy", ("FINANCIAL",)), ds("report")],
        [edge("src", "copy"), edge("copy", "report")],
        removes,
    )
    index.remove_dataset("copy")
    assert index.get("copy") is None and index.kind("copy") is NodeKind.DELETED
    assert origins(index, "report") == {UNDESCRIBED: ("copy", "report")}


def test_undescribed_outputs_deny_leaves_every_placeholder_undescribed() -> None:
    index = EffectiveIndex.build(
        [ds("src", ("PII",), ("DE",)), placeholder("p"), ds("after")],
        [edge("src", "p"), edge("p", "after")],
        removes,
        inherit=False,
    )
    assert index.get("p") is None and index.kind("p") is NodeKind.UNDESCRIBED_PLACEHOLDER
    assert origins(index, "after") == {"DE": ("src", "p", "after"), UNDESCRIBED: ("p", "after")}
    index.set_inheritance(True)
    assert labels(index, "p") == {"PII": ("src", "p")} and origins(index, "after") == {"DE": ("src", "p", "after")}
    index.set_inheritance(False)
    assert index.get("p") is None


def test_describing_a_placeholder_and_deleting_it_change_what_it_is() -> None:
    index = EffectiveIndex.build([ds("src", ("PII",)), placeholder("p")], [edge("src", "p")], removes)
    assert index.get("p").inherited_only
    index.set_dataset(ds("p", ("HEALTH",), locations=("aws:eu-central-1",)))
    view = index.get("p")
    assert not view.inherited_only and set(view.classifications) == {"HEALTH", "PII"}
    index.remove_dataset("p")
    assert index.get("p") is None and index.kind("p") is NodeKind.DELETED


def test_a_snapshot_names_its_placeholders() -> None:
    index = EffectiveIndex.from_snapshot(
        [ds("src", ("PII",)).residency_row()], [EdgeRow("src", "p", "job", "")], removes, placeholders=["p", "lone"]
    )
    assert labels(index, "p") == {"PII": ("src", "p")}
    assert index.get("lone") is None and index.kind("lone") is NodeKind.UNDESCRIBED_PLACEHOLDER


def test_values_agree_with_the_views_without_building_them() -> None:
    index = EffectiveIndex.build(
        [
            ds("a", ("PII.CONTACT",), ("DE",), locations=("aws:eu-central-1",)),
            ds("b", ("FINANCIAL.PAYMENT",), ("IN",)),
        ],
        [edge("a", "c"), edge("b", "c", "aggregate"), edge("c", "d")],
        removes,
    )
    for node in ("a", "b", "c", "d"):
        values = index.values(node)
        view = index.get(node)
        assert (values is None) == (view is None)
        if values is not None and view is not None:
            assert set(values[0]) == set(view.classifications) and set(values[1]) == set(view.origins)
            assert values[2] == view.locations
    assert index.values("never") is None
