"""Catalog client commands: `domicile dataset put|get|list|delete` and `domicile regions`."""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from typing import Any

import click
import yaml
from google.protobuf import json_format

from domicile.catalog.convert import dataset_from_proto
from domicile.catalog.regions import is_country, suggest_country
from domicile.cli.base import EXIT_USAGE, ISO_TIME, CommandError, command, fail, group
from domicile.cli.client import call, emit, table, when
from domicile.client import Client, Dataset, Field, Page, Protection
from domicile.suggest import did_you_mean
from domicile.v1 import catalog_pb2


def _render_dataset(d: Dataset) -> str:
    lines = [
        f"id:              {d.id}" + ("   (placeholder)" if d.placeholder else ""),
        f"name:            {d.name}",
        f"owner:           {d.owner}",
        f"description:     {d.description}",
        f"classifications: {', '.join(d.classifications) or '-'}",
        f"origins:         {', '.join(d.origins) or '-'}",
        f"locations:       {', '.join(d.locations) or '-'}",
        f"tags:            {', '.join(f'{k}={v}' for k, v in sorted(d.tags.items())) or '-'}",
        "protection:      "
        + (
            ", ".join(
                n for n in ("encrypted_at_rest", "field_level_encrypted", "tokenized") if getattr(d.protection, n)
            )
            or "-"
        ),
        f"revision:        {d.revision}",
        f"updated:         {when(d.update_time)}" + (f" by {d.updated_by}" if d.updated_by else ""),
    ]
    if d.fields:
        lines.append("fields:")
        for f in d.fields:
            lines.append(f"  {f.name}: {', '.join(f.classifications) or '-'}")
    return "\n".join(lines)


def _parse_field(text: str) -> Field:
    name, _, labels = text.partition(":")
    if not name:
        raise click.BadParameter(f"{text!r}: expected NAME or NAME:LABEL[,LABEL...]")
    return Field(name, tuple(label for label in labels.split(",") if label))


def _dataset_file(path: Path) -> dict[str, Any]:
    """The attributes a --file gives: a Dataset message as YAML or JSON."""
    message = catalog_pb2.Dataset()
    try:
        json_format.ParseDict(yaml.safe_load(path.read_text("utf-8")), message)
    except (yaml.YAMLError, json_format.ParseError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--file") from None
    dataset = dataset_from_proto(message)
    values = {f.name: getattr(dataset, f.name) for f in dataclasses.fields(Dataset) if f.name in _SETTABLE}
    values["tags"] = dict(values["tags"])
    return values


_SETTABLE = (
    "id",
    "name",
    "owner",
    "description",
    "classifications",
    "origins",
    "locations",
    "tags",
    "fields",
    "protection",
)


@group("dataset")
def dataset() -> None:
    """Create, read, list and delete datasets."""


@dataset.command("put")
@click.argument("dataset_id", required=False)
@click.option(
    "--file",
    "file_",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A dataset as YAML or JSON (fields as in the Dataset message); flags override it.",
)
@click.option("--name", help="Display name.")
@click.option("--owner", help="Owning team or person, e.g. credit@bank.example.")
@click.option("--description", help="Free text.")
@click.option("-c", "--classification", "classifications", multiple=True, help="Label, e.g. PII.CONTACT (repeatable).")
@click.option(
    "-g", "--origin", "origins", multiple=True, help="ISO 3166-1 country code of the data subjects (repeatable)."
)
@click.option("-l", "--location", "locations", multiple=True, help="Region id where a copy is stored (repeatable).")
@click.option("-t", "--tag", "tags", multiple=True, help="KEY=VALUE (repeatable).")
@click.option("-f", "--field", "fields", multiple=True, help="NAME[:LABEL,LABEL] (repeatable).")
@click.option(
    "--encrypted-at-rest/--no-encrypted-at-rest", default=None, help="Whether stored copies are encrypted at rest."
)
@click.option(
    "--expected-revision",
    type=int,
    default=0,
    show_default=True,
    help="Fail (ABORTED) unless the dataset is at this revision (0 = unchecked).",
)
@click.pass_context
def put(
    ctx,
    dataset_id,
    file_,
    name,
    owner,
    description,
    classifications,
    origins,
    locations,
    tags,
    fields,
    encrypted_at_rest,
    expected_revision,
) -> None:
    """Create or replace a dataset (the whole dataset: unspecified attributes are cleared)."""
    values = _dataset_file(file_) if file_ is not None else {"tags": {}}
    if dataset_id:
        values["id"] = dataset_id
    if not values.get("id"):
        raise click.UsageError("a dataset id is required (argument or `id` in --file)")
    origins = tuple(_country(origin, "--origin") for origin in origins)
    for attr, value in (("name", name), ("owner", owner), ("description", description)):
        if value is not None:
            values[attr] = value
    for attr, given in (("classifications", classifications), ("origins", origins), ("locations", locations)):
        if given:
            values[attr] = given
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep:
            raise click.BadParameter(f"{tag!r}: expected KEY=VALUE", param_hint="--tag")
        values["tags"][key] = value
    if fields:
        values["fields"] = [_parse_field(f) for f in fields]
    if encrypted_at_rest is not None:
        protection = values.get("protection") or Protection()
        values["protection"] = dataclasses.replace(protection, encrypted_at_rest=encrypted_at_rest)
    dataset = Dataset.create(values.pop("id"), **values)
    stored = call(ctx, lambda client: client.upsert_dataset(dataset, expected_revision=expected_revision))
    emit(ctx, stored, _render_dataset, key="dataset")


@dataset.command("get")
@click.argument("dataset_id")
@click.option("--as-of", type=ISO_TIME, help="Show the dataset as it was at this ISO 8601 time.")
@click.pass_context
def get(ctx, dataset_id, as_of) -> None:
    """Show one dataset."""
    dataset = call(ctx, lambda client: client.get_dataset(dataset_id, as_of=as_of), dataset_id=dataset_id)
    emit(ctx, dataset, _render_dataset, key="dataset")


@dataset.command("list")
@click.option("-c", "--classification", default="", help="Label; matches descendants too (PII matches PII.CONTACT).")
@click.option("-g", "--origin", default="", help="Only datasets with data subjects from this ISO country code.")
@click.option("-r", "--region", default="", help="Only datasets with a copy in this region id.")
@click.option("--owner", default="", help="Only datasets of this owner (exact).")
@click.option("-q", "--query", default="", help="Substring of id, name or description.")
@click.option("--as-of", type=ISO_TIME, help="List the catalog as it was at this ISO 8601 time.")
@click.option("--page-size", type=int, default=0, help="Datasets per request (default 100).")
@click.option("--page-token", default="", help="Continue from a previous page.")
@click.option("--all", "all_pages", is_flag=True, help="Follow page tokens to the end.")
@click.pass_context
def list_(ctx, classification, origin, region, owner, query, as_of, page_size, page_token, all_pages) -> None:
    """List datasets matching every given filter."""
    filters = {
        "classification": classification,
        "origin": _country(origin, "--origin") if origin else "",
        "region": region,
        "owner": owner,
        "query": query,
        "as_of": as_of,
        "page_size": page_size,
    }
    page = call(ctx, partial(Client.list_datasets, page_token=page_token, **filters))
    while all_pages and page.next_page_token:
        more = call(ctx, partial(Client.list_datasets, page_token=page.next_page_token, **filters))
        page = Page(page.items + more.items, more.next_page_token)

    def render(r: Page[Dataset]) -> str:
        rows = [
            (
                d.id,
                ",".join(d.classifications) or "-",
                ",".join(d.origins) or "-",
                ",".join(d.locations) or "-",
                d.owner or "-",
                d.revision,
            )
            for d in r.items
        ]
        text = table(("ID", "CLASSIFICATIONS", "ORIGINS", "LOCATIONS", "OWNER", "REV"), rows)
        if r.next_page_token:
            text += f"\n(more: --page-token {r.next_page_token})"
        return text

    emit(ctx, page, render, key="datasets")


list_.name = "list"


@dataset.command("delete")
@click.argument("dataset_id")
@click.option(
    "--expected-revision",
    type=int,
    default=0,
    show_default=True,
    help="Fail (ABORTED) unless the dataset is at this revision (0 = unchecked).",
)
@click.pass_context
def delete(ctx, dataset_id, expected_revision) -> None:
    """Soft-delete a dataset (history and --as-of reads keep it)."""
    call(
        ctx,
        lambda client: client.delete_dataset(dataset_id, expected_revision=expected_revision),
        dataset_id=dataset_id,
    )
    emit(ctx, {"deleted": dataset_id}, lambda r: f"deleted {dataset_id}")


def _country(value: str, option: str) -> str:
    """An ISO 3166-1 alpha-2 code as given, or a usage error suggesting the code meant."""
    if is_country(value):
        return value
    raise CommandError(
        f"{option}: {value!r} is not an ISO 3166-1 alpha-2 country code{did_you_mean(suggest_country(value))}",
        code="INVALID_ARGUMENT",
        exit_code=EXIT_USAGE,
    )


@command("regions")
@click.option("--provider", default="", help="Only this provider (aws, gcp, azure, or a policy's private ones).")
@click.option("--country", default="", help="Only regions in this ISO 3166-1 country code, e.g. DE.")
@click.pass_context
def regions(ctx, provider, country) -> None:
    """List known regions with their countries (the builtin ones and the policy's private ones)."""
    if country:
        country = _country(country, "--country")
    known = call(ctx, lambda client: client.list_regions())
    providers = sorted({r.provider for r in known})
    if provider and provider not in providers:
        fail(
            f"--provider: unknown provider {provider!r} (known: {', '.join(providers)})",
            code="INVALID_ARGUMENT",
            exit_code=EXIT_USAGE,
        )
    selected = tuple(
        r for r in known if (not provider or r.provider == provider) and (not country or r.country == country)
    )
    emit(
        ctx,
        selected,
        lambda regions: table(
            ("ID", "COUNTRY", "NAME"),
            [(x.id, x.country, x.display_name + (" (private)" if x.private else "")) for x in regions],
        ),
        key="regions",
    )
