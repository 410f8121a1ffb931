"""A small corpus the knowledge tests generate, with paraphrased questions labelled by hand."""

from __future__ import annotations

from fpdf import FPDF

RUNBOOK = """Rolling back a release

When a deployment goes wrong, revert it quickly. Run deployctl rollback --to previous from the
release host. The command restores the last known good build, drains traffic from the broken
pods and re-points the load balancer. Confirm the rollback in the release dashboard, then open an
incident ticket describing what went wrong with the deployment.
"""

ONCALL = """# On-call and incident response

The primary on-call engineer is paged by PagerDuty whenever production alerts fire. If the
primary does not acknowledge within ten minutes, the secondary engineer is paged. Incidents of
severity one also page the engineering manager.

## Handover

On-call shifts hand over every Monday at ten in the morning.
"""

ONBOARDING = """<html><head><title>Onboarding guide</title><style>body {color: red}</style>
<script>var tracking = "do not index me";</script></head>
<body><h1>Welcome</h1><p>On your first day, collect your laptop from the IT desk, install the VPN
client and enrol your phone for two-factor authentication.</p>
<p>Your buddy will walk you through the code review process during the first week.</p>
</body></html>
"""

PDF_PAGES = [
    "Database backups. Every production database is backed up nightly to object storage by "
    "the backup operator. Backups are encrypted at rest.",
    "Restoring from a snapshot. To recover a database, pick the snapshot in the console, "
    "create a new instance from it and switch the application connection string to it.",
    "Retention policy. Nightly backups are kept for thirty days, monthly backups for one year. "
    "Older backups are deleted automatically.",
]


def pdf_bytes(pages: list[str]) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def corpus() -> dict[str, bytes]:
    return {
        "rollback.txt": RUNBOOK.encode(),
        "oncall.md": ONCALL.encode(),
        "onboarding.html": ONBOARDING.encode(),
        "backups.pdf": pdf_bytes(PDF_PAGES),
    }


# question -> (file, page or None)
LABELLED = {
    "how do I revert a bad release?": ("rollback.txt", None),
    "who gets woken up when production breaks": ("oncall.md", None),
    "what do I set up on my computer when I start": ("onboarding.html", None),
    "recover the database from a snapshot": ("backups.pdf", 2),
    "how long do we keep backups": ("backups.pdf", 3),
}
