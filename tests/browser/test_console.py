"""The console in a real browser against `domicile serve --dev --demo` (the scenarios of the
console issue), with an accessibility check (axe-core) and keyboard reachability on every
page. Screenshots of each page are saved as test artifacts (see conftest.py)."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ROOT, screenshot

JOINED = "s3://bank-global-analytics/customer-payments-joined"
LATE = "s3://bank-reports/late"
CUSTOMERS = "s3://bank-eu-lake/customers"
AXE = ROOT / "console-web" / "node_modules" / "axe-core" / "axe.min.js"
# Every page, by URL, with text that shows it has loaded its data.
PAGES = {
    "overview": ("/", "Where regulated data lives"),
    "datasets": ("/datasets?classification=PII", "customers"),
    "violations": ("/violations", "under policy"),
    "dataset": (f"/dataset?id={JOINED}", "Revision history"),
    "lineage": (f"/lineage?id={JOINED}", "Edges as a table"),
    "decisions": ("/decisions", "Decisions"),
    "policy": ("/policy", "Version history"),
    "security": ("/security", "Authentication failures"),
    "access": (f"/access?dataset_id={CUSTOMERS}", "Observed violations"),
}


@pytest.fixture(scope="module")
def context(browser, console_server):
    """A browser context signed in with the server's printed one-time link."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(console_server.sign_in_link)
    screenshot(page, "sign-in")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(console_server.url + "/")
    page.get_by_text("Where regulated data lives").wait_for()
    page.close()
    yield context
    context.close()


def open_page(context, console_server, path: str, ready: str):
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(console_server.url + path)
    page.get_by_text(ready).first.wait_for()
    page.wait_for_load_state("networkidle")
    page.csp_errors = [e for e in errors if "Content Security Policy" in e]  # type: ignore[attr-defined]
    return page


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_loads_under_the_csp_and_passes_axe(context, console_server, name):
    path, ready = PAGES[name]
    page = open_page(context, console_server, path, ready)
    screenshot(page, name)
    assert page.csp_errors == []
    page.evaluate(AXE.read_text())
    result = page.evaluate(
        "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
        " return r.violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)})); }"
    )
    serious = [v for v in result if v["impact"] in ("serious", "critical")]
    assert serious == [], json.dumps(serious, indent=1)
    page.close()


@pytest.mark.parametrize("name", list(PAGES))
def test_everything_reachable_by_keyboard(context, console_server, name):
    path, ready = PAGES[name]
    page = open_page(context, console_server, path, ready)
    wanted = page.evaluate(
        """() => {
          const all = [...document.querySelectorAll('a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]),'
                       + ' select:not([disabled]), textarea, summary, [tabindex]:not([tabindex="-1"])')]
            .filter(e => e.checkVisibility())
            // The content of a closed <details> is hidden, so not in the tab order until opened.
            .filter(e => { const closed = e.closest('details:not([open])');
                           return !closed || (e.tagName === 'SUMMARY' && e.parentElement === closed); });
          all.forEach((e, i) => e.dataset.kbd = String(i));
          return all.length;
        }"""
    )
    reached: set[int] = set()
    # Date-time inputs take a Tab per field (day, month, ...): allow several per element.
    for _ in range(wanted * 8 + 20):
        page.keyboard.press("Tab")
        index = page.evaluate("() => document.activeElement && document.activeElement.dataset.kbd")
        if index is not None:
            reached.add(int(index))
        if len(reached) == wanted:
            break
    missing = page.evaluate(
        "(reached) => [...document.querySelectorAll('[data-kbd]')].filter(e => !reached.includes(Number(e.dataset.kbd)))"
        ".map(e => e.outerHTML.slice(0, 120))",
        sorted(reached),
    )
    assert missing == [], missing
    page.close()


def test_search_a_dataset(context, console_server):
    page = open_page(context, console_server, "/datasets", "Datasets")
    page.get_by_label("Text").fill("joined")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/datasets?query=joined")
    rows = page.locator("table.list tbody tr")
    # The rows of the unfiltered listing stay until the search answers.
    expect(rows).to_have_count(1)
    assert JOINED in rows.first.inner_text()
    screenshot(page, "datasets-search")
    rows.first.get_by_role("link", name=JOINED).click()
    section = page.locator("section", has_text="Classifications: own and effective")
    # The heading shows at once, the attributes when Explain answers.
    section.get_by_text("inherited").first.wait_for()


def test_lineage_of_the_joined_dataset_is_a_violation_and_replays_in_time(context, console_server):
    page = open_page(context, console_server, f"/lineage?id={JOINED}", "Edges as a table")
    graph = page.locator(".graph")
    graph.locator("canvas").first.wait_for()
    page.get_by_text("Datasets as a table").click()
    nodes = page.locator("[data-testid=node-table] tbody tr")
    joined_row = page.locator("[data-testid=node-table] tbody tr", has_text=JOINED)
    joined_row.get_by_text("stored where the policy forbids it").wait_for()
    assert nodes.count() >= 5
    screenshot(page, "lineage-joined")

    # An edge recorded now, after the demo's: the time slider moved before it hides it. Its
    # output is described (stored in the US) a few seconds later: a violation from then on.
    console_server.cli("lineage", "record", "--job", "late-report", "--run-id", "late-1", "-i", JOINED, "-o", LATE)
    time.sleep(3)
    console_server.cli("dataset", "put", LATE, "-l", "aws:us-east-1")
    page.reload()
    edges = page.locator("[data-testid=edge-table] tbody tr")
    page.get_by_text("Edges as a table").click()
    page.locator("[data-testid=edge-table] tbody tr", has_text="late-report").wait_for()
    late_recorded = (
        page.locator("[data-testid=edge-table] tbody tr", has_text="late-report").locator("td").last.inner_text()
    )
    before = datetime.fromisoformat(late_recorded.replace(" ", "T").replace("Z", "+00:00")) - timedelta(seconds=1)
    count_now = edges.count()
    move_slider(page, before)
    page.wait_for_url("**as_of=*")
    page.wait_for_function(
        f"() => document.querySelectorAll('[data-testid=edge-table] tbody tr').length === {count_now - 1}"
    )
    assert page.locator("[data-testid=edge-table] tbody tr", has_text="late-report").count() == 0
    # The graph of then drawn (every dataset it shows), for the screenshot.
    page.wait_for_function(
        "() => { const g = document.querySelector('.graph'); return !!g && g.dataset.ready === g.dataset.nodes; }"
    )
    screenshot(page, "lineage-before-late-edge")

    # Colours are those of the slider's time: between the edge and the description, the late
    # dataset was known only from lineage; now it is stored where the policy forbids it.
    late_row = page.locator("[data-testid=node-table] tbody tr", has_text=LATE)
    move_slider(page, before + timedelta(seconds=2.5))
    page.get_by_text("Datasets as a table").click()
    late_row.get_by_text("undescribed (known only from lineage)").wait_for()
    joined_row.get_by_text("stored where the policy forbids it").wait_for()
    page.get_by_role("button", name="Now").click()
    late_row.get_by_text("stored where the policy forbids it").wait_for()


def test_lineage_edges_say_which_declassify_and_which_claim_it_ungranted(context, console_server):
    """A declassifier the policy grants the job is marked as declassifying; the same transform
    claimed by a job it is not granted to is a plain copy for residency, and says so."""
    source, claimed = "s3://claims-lake/customers", "s3://claims-lake/customers-anonymized"
    console_server.cli(
        "lineage", "record", "--job", "claims/anonymize", "--run-id", "c1", "--transform", "anonymize",
        "-i", source, "-o", claimed,
    )  # fmt: skip
    page = open_page(context, console_server, f"/lineage?id={claimed}", "Edges as a table")
    page.locator(".graph[data-ready]").wait_for()
    page.get_by_text("Edges as a table").click()
    row = page.locator("[data-testid=edge-table] tbody tr", has_text="claims/anonymize")
    expect(row.locator("td").nth(3)).to_have_text("anonymize (declassification not granted)")

    page.goto(f"{console_server.url}/lineage?id={JOINED}")
    page.get_by_text("Edges as a table").click()
    granted = page.locator("[data-testid=edge-table] tbody tr", has_text="airflow-eu/anonymize_customer_segments")
    expect(granted.locator("td").nth(3)).to_have_text("anonymize (declassifies)")
    page.close()


def move_slider(page, when: datetime) -> None:
    """Move the lineage page's time slider to `when` as a pointer would (drag, release)."""
    page.locator("#as-of-slider").evaluate(
        """(el, value) => {
          const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
          set.call(el, String(value));
          el.dispatchEvent(new Event('input', {bubbles: true}));
          el.dispatchEvent(new PointerEvent('pointerup', {bubbles: true}));
        }""",
        int(when.timestamp() * 1000),
    )


def test_access_patterns_show_who_read_a_dataset_from_where(context, console_server):
    # A run in a sanctioned location reads the EU customers: an access, and an observed violation.
    console_server.cli(
        "lineage", "record", "--job", "airflow-ru/export_customers", "--run-id", "export-1",
        "--run-region", "onprem:msk-dc1", "-i", CUSTOMERS, "-o", "s3://bank-ru/customers-export",
    )  # fmt: skip
    page = open_page(context, console_server, f"/access?dataset_id={CUSTOMERS}", "Who touched the dataset")
    actors = page.locator("[data-testid=dataset-actors] tbody tr", has_text="airflow-ru/export_customers")
    expect(actors).to_contain_text("read onprem:msk-dc1")
    observed = page.locator("[data-testid=observed-violations] tbody tr", has_text="export-1")
    expect(observed.filter(has_text=CUSTOMERS)).to_contain_text("denied by the policy")
    screenshot(page, "access")

    # The actor's own view, linked from its row; the time range is in the URL.
    actors.get_by_role("link", name="airflow-ru/export_customers").click()
    runs = page.get_by_role("heading", name="Latest runs")
    expect(runs).to_be_visible()
    expect(page.locator("[data-testid=actor-datasets]")).to_contain_text("s3://bank-ru/customers-export")
    future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    page.goto(f"{console_server.url}/access?actor=airflow-ru/export_customers&since={future}")
    expect(page.get_by_text("No recorded access by this actor in this time range.")).to_be_visible()
    expect(page.get_by_text("No observed violation in this time range.")).to_be_visible()
    page.close()


def test_open_a_deny_decision_and_replay_it(context, console_server):
    console_server.cli("decide", JOINED, "--op", "store", "-r", "aws:us-east-1")
    page = open_page(context, console_server, "/decisions?outcome=OUTCOME_DENY", "Decisions")
    link = page.locator("table.list tbody tr", has_text=JOINED).first.locator("a.mono").last
    link.click()
    page.get_by_role("heading", name="Why").wait_for()
    assert "gdpr-personal-data" in page.content()
    # The proof GetDecision gives: the decision's line, and the signed checkpoint that covers it.
    decision_id = parse_qs(urlsplit(page.url).query)["id"][0]
    proof = page.request.get(f"{console_server.url}/api/v1/decision?decision_id={decision_id}").json()["proof"]
    assert proof["checkpoint_verified"], proof
    shown = page.get_by_test_id("proof")
    expect(shown).to_contain_text(f"line {proof['line_seq']} of replica {proof['replica_id']}")
    expect(shown).to_contain_text(proof["line_hash"])
    expect(shown).to_contain_text(f"reaches the checkpoint at line {proof['checkpoint_seq']}")
    expect(shown).to_contain_text(f"key {proof['checkpoint_key_id']}; its signature verified")
    page.get_by_role("button", name="Replay").click()
    page.get_by_text("Match", exact=True).wait_for()
    screenshot(page, "decision")


def test_upload_a_candidate_policy_and_see_its_impact(context, console_server, tmp_path: Path):
    text = (ROOT / "examples" / "policy.yaml").read_text()
    candidate = re.sub(r'version: "[^"]+"', 'version: "2026.12-candidate"', text, count=1).replace(
        "    store:   {allow: [EU_PLUS_ADEQUATE]}", "    store:   {allow: [EEA]}", 1
    )
    assert candidate != text
    path = tmp_path / "candidate.yaml"
    path.write_text(candidate)
    page = open_page(context, console_server, "/policy", "Version history")
    page.get_by_label("Policy file").set_input_files(str(path))
    page.get_by_role("button", name="Show impact").click()
    impact = page.get_by_test_id("impact")
    impact.wait_for()
    assert "2026.12-candidate" in impact.inner_text()
    assert impact.locator("tbody tr").count() > 0
    screenshot(page, "policy-impact")


def test_catalog_reader_is_refused_the_decisions_page(browser, console_server):
    context = browser.new_context()
    page = context.new_page()
    page.goto(console_server.new_link("catalog:read"))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(console_server.url + "/")
    page.goto(console_server.url + "/decisions")
    refusal = page.get_by_role("alert")
    refusal.wait_for()
    assert "Not allowed" in refusal.inner_text() and "audit:read" in refusal.inner_text()
    screenshot(page, "decisions-refused")
    context.close()


def test_sign_out_and_be_refused(browser, console_server):
    context = browser.new_context()
    page = context.new_page()
    page.goto(console_server.new_link())
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Where regulated data lives").wait_for()
    cookies = {c["name"]: c for c in context.cookies()}
    cookie = cookies["__Host-domicile-session"]
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    page.get_by_role("button", name="Sign out").click()
    page.get_by_text("You are signed out").wait_for()
    page.goto(console_server.url + "/datasets")
    page.get_by_text("You are signed out").wait_for()
    # The old session id is refused too, even when presented by hand.
    answer = page.request.get(
        console_server.url + "/api/v1/datasets", headers={"Cookie": f"__Host-domicile-session={cookie['value']}"}
    )
    assert answer.status == 401
    screenshot(page, "signed-out")
    context.close()


def test_one_time_link_cannot_be_used_twice(browser, console_server, context):
    page = browser.new_page()
    page.goto(console_server.sign_in_link)
    assert page.get_by_role("button", name="Sign in").count() == 1
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("already used").wait_for()
    page.close()


def test_a_large_lineage_graph_is_laid_out_and_drawn_light(context, console_server):
    """Above 400 datasets the lineage graph is laid out by the layered layout (not dagre) and
    drawn without labels until zoomed in; the dataset picker lists every dataset once used, a
    click on a dataset selects it, and the exports hold the whole graph."""
    sources = [f"s3://wide-graph/source-{i:03d}" for i in range(450)]
    hubs = ["s3://wide-graph/hub-a", "s3://wide-graph/hub-b"]
    report = "s3://wide-graph/report"
    inputs = [arg for source in sources for arg in ("-i", source)]
    console_server.cli(
        "lineage", "record", "--job", "wide-fan-in", "--run-id", "w1", *inputs, "-o", hubs[0], "-o", hubs[1]
    )
    console_server.cli(
        "lineage", "record", "--job", "wide-report", "--run-id", "w2", "-i", hubs[0], "-i", hubs[1], "-o", report
    )
    page = open_page(
        context, console_server, f"/lineage?id={report}&direction=DIRECTION_UPSTREAM&depth=3", "Edges as a table"
    )
    total = len(sources) + len(hubs) + 1
    page.locator(f".graph[data-ready='{total}']").wait_for()
    assert page.locator(".graph").get_attribute("data-edges") == str(2 * len(sources) + 2)
    screenshot(page, "lineage-large")
    picker = page.get_by_label("Select a dataset in the graph")
    assert picker.locator("option").count() == 1  # built when first used
    picker.focus()
    expect(picker.locator("option")).to_have_count(total + 1)
    picker.select_option(hubs[0])
    page.get_by_role("button", name="Expand upstream").wait_for()
    assert page.locator(".graph-tools").get_by_text(hubs[0]).count() >= 1
    # The view moves the selected dataset to its centre (a 200 ms animation): a click there
    # selects it again once the picker is cleared.
    page.wait_for_timeout(1000)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    picker.select_option("")
    box = page.locator(".graph canvas").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(picker).to_have_value(hubs[0])
    # An export is the whole graph, labels included.
    with page.expect_download() as download:
        page.get_by_role("button", name="Export SVG").click()
    exported = Path(download.value.path()).read_text("utf-8")
    assert exported.startswith("<svg") and exported.count("<path") >= 3
    assert "source-000" in exported and "source-449" in exported and "hub-a" in exported
    with page.expect_download() as download:
        page.get_by_role("button", name="Export PNG").click()
    assert Path(download.value.path()).read_bytes().startswith(b"\x89PNG")
