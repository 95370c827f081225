"""What a run of tap scenarios tells people and tools: text, JUnit XML, HTML, traces.

Everything here reads :class:`scenarios.model.ScenarioResult` s only (the runner
makes them):

* :func:`failure_text`: one scenario that did not pass, as ``emvtap run`` and the
  pytest plugin print it: each failed check (name, expected, actual, and the YAML
  line that asked), the transaction in words and the decoded APDU trace of the
  tap; for an error, its message;
* :func:`summary_text`: the tally (passed, failed, errored) and the slowest scenarios;
* :func:`junit_xml`: JUnit XML (``testsuites`` / one ``testsuite`` per pack folder /
  one ``testcase`` per scenario, ``failure`` and ``error`` with the failure text);
* :func:`html_report`: one self-contained HTML page, each scenario expandable to
  its checks, its transaction and its trace;
* :func:`write_traces`: per tap, ``<scenario-id>/tap-<n>.txt`` (decoded) and
  ``.pcapng`` (Wireshark: ``-d iso14443.subdissector,iso7816``).

PANs are masked unless ``clear=True``: traces by :mod:`emv.trace`, and in check
values and messages every run of 13 to 19 digits that passes the Luhn check
(a PAN's shape) by :func:`emv.masking.mask_pan`.
"""

from __future__ import annotations

import hashlib
import html
import linecache
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path

from emv import trace as emv_trace
from emv.masking import mask_pan
from scenarios.model import Check, ScenarioResult, Source, TapResult, TapSpec

__all__ = [
    "failure_text",
    "html_report",
    "junit_xml",
    "mask_text",
    "pack_name",
    "safe_name",
    "summary_text",
    "tally",
    "write_traces",
]

_PAN_LIKE = re.compile(r"(?<![0-9])[0-9]{13,19}(?![0-9])")
# Characters XML 1.0 cannot carry at all (even escaped).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]+")
_MAX_NAME = 100


# --- masking and small helpers -------------------------------------------------------------


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def mask_text(text: str, *, clear: bool = False) -> str:
    """``text`` with every PAN-shaped number (13-19 digits, Luhn-valid) masked, unless
    ``clear``. Check values and error messages go through here; traces and the
    transaction report mask by their own rules."""
    if clear:
        return text
    return _PAN_LIKE.sub(
        lambda found: mask_pan(found.group()) if _luhn(found.group()) else found.group(), text
    )


def tally(results: Iterable[ScenarioResult]) -> dict[str, int]:
    """``{"passed": n, "failed": n, "errored": n}``."""
    counts = {"passed": 0, "failed": 0, "errored": 0}
    for result in results:
        counts[result.verdict] += 1
    return counts


def pack_name(result: ScenarioResult) -> str:
    """The pack a scenario belongs to: its folder below ``packs`` (dotted, e.g.
    ``visa.kernel3``), else the name of the folder holding its file."""
    folder = Path(result.scenario.source.file).parent
    parts = folder.parts
    if "packs" in parts:
        below = parts[len(parts) - parts[::-1].index("packs") :]
        if below:
            return ".".join(below)
    return folder.name or "scenarios"


def safe_name(name: str) -> str:
    """``name`` as one file name: only ``A-Za-z0-9._=,+-`` kept (others become ``_``),
    never hidden or empty, long names cut and made unique by a hash."""
    cleaned = _UNSAFE.sub("_", name).strip("._") or "_"
    if len(cleaned) > _MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        cleaned = f"{cleaned[: _MAX_NAME - 13]}-{digest}"
    return cleaned


def _tap_spec(result: ScenarioResult, tap: TapResult) -> TapSpec | None:
    taps = result.scenario.taps
    return taps[tap.spec] if 0 <= tap.spec < len(taps) else None


def _tap_number(tap: TapResult) -> int:
    """Taps are numbered from 1 for people (``TapResult.index`` counts from 0)."""
    return tap.index + 1


def _yaml_line(source: Source) -> str:
    """The text of the YAML line ``source`` points at ('' when the file is gone)."""
    return linecache.getline(source.file, source.line).strip()


def _failed_checks(tap: TapResult) -> list[Check]:
    return [check for check in tap.checks if not check.passed]


def _trace_text(tap: TapResult, clear: bool) -> str:
    return emv_trace.to_text(tap.trace, mask=not clear) if tap.trace.events else ""


def _indent(text: str, prefix: str) -> list[str]:
    return [f"{prefix}{line}" if line else "" for line in text.rstrip("\n").splitlines()]


# --- text ----------------------------------------------------------------------------------


def failure_text(result: ScenarioResult, *, clear: bool = False) -> str:
    """A scenario that did not pass, for people (``emvtap run``, the pytest plugin).

    Per failing tap: each failed check with its expected and actual values and
    the YAML line that asked; the tap's error, if any; the transaction in words;
    the decoded APDU trace. An errored scenario also gives its message.
    """
    scenario = result.scenario
    word = "ERROR" if result.verdict == "errored" else "FAILED"
    lines = [f"{word} {scenario.id} ({scenario.source})"]
    if scenario.title:
        lines.append(f"  {scenario.title}")
    if scenario.requirement:
        lines.append(f"  requirement: {scenario.requirement}")
    if result.error:
        lines.append("  error:")
        lines.extend(_indent(mask_text(result.error, clear=clear), "    "))
    for tap in result.taps:
        if tap.passed and not tap.error:
            continue
        lines.extend(_tap_failure(result, tap, clear))
    return "\n".join(lines) + "\n"


def _tap_failure(result: ScenarioResult, tap: TapResult, clear: bool) -> list[str]:
    spec = _tap_spec(result, tap)
    where = f" ({spec.source})" if spec is not None else ""
    failed = _failed_checks(tap)
    planned = sum(spec.repeat for spec in result.scenario.taps)
    head = f"  tap {_tap_number(tap)} of {planned}{where}"
    if failed:
        head += f": {len(failed)} of {len(tap.checks)} check(s) failed"
    lines = [head]
    if tap.error and tap.error not in (result.error or ""):  # else already said above
        lines.append("    error:")
        lines.extend(_indent(mask_text(tap.error, clear=clear), "      "))
    for check in failed:
        lines.append(f"    x {check.name}")
        lines.append(f"        expected: {mask_text(check.expected, clear=clear)}")
        lines.append(f"        actual:   {mask_text(check.actual, clear=clear)}")
        asked = _yaml_line(check.source)
        lines.append(f"        asked at {check.source}" + (f":  {asked}" if asked else ""))
    if tap.report:
        lines.append("    transaction:")
        lines.extend(_indent(mask_text(tap.report, clear=clear), "      "))
    text = _trace_text(tap, clear)
    if text:
        lines.append(f"    APDU trace of tap {_tap_number(tap)}:")
        lines.extend(_indent(text, "      "))
    return lines


def summary_text(
    results: Sequence[ScenarioResult], seconds: float | None = None, slowest: int = 5
) -> str:
    """The tally of a run and its ``slowest`` scenarios with their seconds."""
    counts = tally(results)
    took = f" in {seconds:.2f} s" if seconds is not None else ""
    lines = [f"{len(results)} scenario(s){took}"]
    width = len(str(max(counts.values(), default=0)))
    for verdict in ("passed", "failed", "errored"):
        lines.append(f"  {verdict:<8} {counts[verdict]:>{width}}")
    ranked = sorted(results, key=lambda r: r.seconds, reverse=True)[:slowest]
    if ranked:
        lines.append("slowest:")
        for result in ranked:
            lines.append(f"  {result.seconds:8.2f} s  {result.scenario.id}  [{result.verdict}]")
    return "\n".join(lines) + "\n"


def _failure_message(result: ScenarioResult, clear: bool) -> str:
    """One line for a JUnit ``message``: what failed first, and how many did."""
    if result.verdict == "errored":
        return mask_text(" ".join((result.error or "errored").split()), clear=clear)
    parts = []
    for tap in result.taps:
        for check in _failed_checks(tap):
            parts.append(
                f"tap {_tap_number(tap)} {check.name}: expected {check.expected}, "
                f"actual {check.actual}"
            )
        if tap.error:
            parts.append(f"tap {_tap_number(tap)}: {' '.join(tap.error.split())}")
    if not parts:
        return "failed"
    more = f" (and {len(parts) - 1} more)" if len(parts) > 1 else ""
    return mask_text(parts[0] + more, clear=clear)


# --- JUnit XML -----------------------------------------------------------------------------


def _xml_safe(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def junit_xml(results: Sequence[ScenarioResult], *, clear: bool = False) -> str:
    """JUnit XML: ``testsuites`` holding one ``testsuite`` per pack folder
    (:func:`pack_name`), one ``testcase`` per scenario (``classname`` the pack,
    ``name`` the scenario id, ``time`` its seconds, ``file`` and ``line``), a
    ``failure`` (message: the first failed check, expected vs actual; body: the
    :func:`failure_text` with the trace) or an ``error`` for an errored one."""
    suites: dict[str, list[ScenarioResult]] = {}
    for result in results:
        suites.setdefault(pack_name(result), []).append(result)
    counts = tally(results)
    root = ET.Element(
        "testsuites",
        name="emvtap",
        tests=str(len(results)),
        failures=str(counts["failed"]),
        errors=str(counts["errored"]),
        time=f"{sum(r.seconds for r in results):.3f}",
    )
    for name, members in suites.items():
        counted = tally(members)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=name,
            tests=str(len(members)),
            failures=str(counted["failed"]),
            errors=str(counted["errored"]),
            skipped="0",
            time=f"{sum(r.seconds for r in members):.3f}",
        )
        for result in members:
            _testcase(suite, name, result, clear)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _testcase(suite: ET.Element, classname: str, result: ScenarioResult, clear: bool) -> None:
    scenario = result.scenario
    case = ET.SubElement(
        suite,
        "testcase",
        classname=classname,
        name=_xml_safe(scenario.id),
        time=f"{result.seconds:.3f}",
        file=_xml_safe(scenario.source.file),
        line=str(scenario.source.line),
    )
    properties = [("title", scenario.title), ("requirement", scenario.requirement)]
    properties += [("tag", tag) for tag in scenario.tags]
    if any(value for _, value in properties):
        holder = ET.SubElement(case, "properties")
        for key, value in properties:
            if value:
                ET.SubElement(holder, "property", name=key, value=_xml_safe(value))
    if result.verdict == "passed":
        return
    kind = "error" if result.verdict == "errored" else "failure"
    element = ET.SubElement(
        case,
        kind,
        message=_xml_safe(_failure_message(result, clear)),
        type="ScenarioError" if kind == "error" else "ScenarioFailure",
    )
    element.text = _xml_safe(failure_text(result, clear=clear))


# --- HTML ----------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; } h3 { font-size: 1em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
details { margin: 0.3em 0; }
details.scenario > summary { font-family: monospace; cursor: pointer; padding: 0.2em; }
details.scenario > div { margin-left: 1.5em; }
.passed { color: #176b2c; } .failed { color: #b00020; } .errored { color: #a15c00; }
tr.bad td { background: #fdecee; }
.verdict { font-weight: bold; display: inline-block; width: 5.5em; }
.muted { color: #666; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def html_report(
    results: Sequence[ScenarioResult], *, clear: bool = False, seconds: float | None = None
) -> str:
    """One self-contained HTML page (no scripts, no external files): the tally (with
    the run's wall-clock ``seconds`` when given), links to the scenarios that did not
    pass, then each scenario as a ``<details>`` (opened when it did not pass) holding
    its checks, and per tap the transaction in words and the decoded APDU trace.
    Every text is HTML-escaped; PANs are masked unless ``clear``."""
    counts = tally(results)
    total = sum(r.seconds for r in results)
    took = (
        f"{seconds:.2f} s (scenarios: {total:.2f} s)" if seconds is not None else f"{total:.2f} s"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>emvtap scenario report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>emvtap scenario report</h1>",
        "<table><tr><th>scenarios</th><th>passed</th><th>failed</th><th>errored</th>"
        "<th>time</th></tr>",
        f"<tr><td>{len(results)}</td><td class='passed'>{counts['passed']}</td>"
        f"<td class='failed'>{counts['failed']}</td>"
        f"<td class='errored'>{counts['errored']}</td><td>{_e(took)}</td></tr></table>",
        f"<p class='muted'>PANs {'IN CLEAR' if clear else 'masked'}.</p>",
    ]
    bad = [result for result in results if result.verdict != "passed"]
    if bad:
        parts.append("<h2>Not passed</h2><ul>")
        parts.extend(
            f"<li><span class='{r.verdict}'>{r.verdict}</span> "
            f"<a href='#{_anchor(r)}'>{_e(r.scenario.id)}</a> "
            f"<span class='muted'>{_e(r.scenario.source)}</span></li>"
            for r in bad
        )
        parts.append("</ul>")
    parts.append("<h2>Scenarios</h2>")
    parts.extend(_html_scenario(result, clear) for result in results)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _anchor(result: ScenarioResult) -> str:
    """The element id of a scenario's ``<details>`` (HTML-escaped)."""
    return _e("s-" + safe_name(result.scenario.id))


def _html_scenario(result: ScenarioResult, clear: bool) -> str:
    scenario = result.scenario
    opened = " open" if result.verdict != "passed" else ""
    out = [
        f"<details class='scenario'{opened} id='{_anchor(result)}'>",
        f"<summary><span class='verdict {result.verdict}'>{result.verdict}</span> "
        f"{_e(scenario.id)} <span class='muted'>{_e(scenario.title)} "
        f"({result.seconds:.2f} s)</span></summary><div>",
        f"<p>{_e(scenario.source)} &middot; pack {_e(pack_name(result))}",
    ]
    if scenario.requirement:
        out.append(f"<br>requirement: {_e(scenario.requirement)}")
    if scenario.tags:
        out.append(f"<br>tags: {_e(', '.join(scenario.tags))}")
    out.append("</p>")
    if result.error:
        out.append(
            f"<p class='errored'>error:</p><pre>{_e(mask_text(result.error, clear=clear))}</pre>"
        )
    for tap in result.taps:
        out.append(_html_tap(result, tap, clear))
    out.append("</div></details>")
    return "\n".join(out)


def _html_tap(result: ScenarioResult, tap: TapResult, clear: bool) -> str:
    spec = _tap_spec(result, tap)
    verdict = "errored" if tap.error else "passed" if tap.passed else "failed"
    where = f" ({_e(spec.source)})" if spec is not None else ""
    amount = ""
    if spec is not None:
        money = f"{spec.amount} {spec.currency}" if spec.currency else spec.amount
        amount = f" &middot; {_e(spec.type)} {_e(money)}"
    out = [
        f"<h3>tap {_tap_number(tap)}{where}{amount} <span class='{verdict}'>{verdict}</span></h3>",
    ]
    if tap.error and tap.error not in (result.error or ""):  # else shown above
        out.append(f"<pre class='errored'>{_e(mask_text(tap.error, clear=clear))}</pre>")
    if tap.checks:
        out.append(
            "<table><tr><th></th><th>check</th><th>expected</th><th>actual</th>"
            "<th>asked at</th></tr>"
        )
        for check in tap.checks:
            mark = "&#10003;" if check.passed else "&#10007;"
            row_class = "" if check.passed else " class='bad'"
            out.append(
                f"<tr{row_class}><td>{mark}</td><td>{_e(check.name)}</td>"
                f"<td>{_e(mask_text(check.expected, clear=clear))}</td>"
                f"<td>{_e(mask_text(check.actual, clear=clear))}</td>"
                f"<td>{_e(check.source)}</td></tr>"
            )
        out.append("</table>")
    if tap.report:
        out.append(
            "<details class='transaction'><summary>transaction</summary>"
            f"<pre>{_e(mask_text(tap.report, clear=clear))}</pre></details>"
        )
    text = _trace_text(tap, clear)
    if text:
        out.append(
            f"<details class='trace'><summary>APDU trace ({len(tap.trace.commands())} "
            f"command(s))</summary><pre>{_e(text)}</pre></details>"
        )
    return "\n".join(out)


# --- traces --------------------------------------------------------------------------------


def write_traces(
    results: Sequence[ScenarioResult], directory: Path, *, clear: bool = False
) -> list[Path]:
    """Per tap, ``directory/<scenario-id>/tap-<n>.txt`` (the decoded transcript) and
    ``tap-<n>.pcapng``; the folder name is :func:`safe_name` of the id (made unique
    when two ids clean to the same name). Returns the files written."""
    written: list[Path] = []
    used: set[str] = set()
    for result in results:
        folder_name = safe_name(result.scenario.id)
        base, suffix = folder_name, 2
        while folder_name in used:
            folder_name, suffix = f"{base}-{suffix}", suffix + 1
        used.add(folder_name)
        folder = directory / folder_name
        for tap in result.taps:
            folder.mkdir(parents=True, exist_ok=True)
            stem = folder / f"tap-{_tap_number(tap)}"
            text_path, pcap_path = stem.with_suffix(".txt"), stem.with_suffix(".pcapng")
            text_path.write_text(emv_trace.to_text(tap.trace, mask=not clear), encoding="utf-8")
            pcap_path.write_bytes(emv_trace.to_pcapng(tap.trace, mask=not clear))
            written += [text_path, pcap_path]
    return written
