"""``main.py consent``: record that a person agreed to the use of their face (issue 30).

The record (who, when, the document's SHA-256) lives in the workspace; convert states in the
content credentials whether one was recorded and says so when none was. Nothing is refused.
"""
from __future__ import annotations

import argparse
import json

from consent.options import ConsentAddOptions, ConsentListOptions
from pipeline.core.command import Command
from pipeline.core.options import from_namespace


def _add(args: argparse.Namespace) -> int:
    opts = from_namespace(ConsentAddOptions, args)
    from pipeline.provenance.consent import add_record
    from pipeline.workspace.layout import require
    record = add_record(require(opts.workspace), opts.face_set, opts.name, opts.document, opts.copy)
    doc = record["document"]
    kept = f"copied to {opts.workspace / doc['copy']}" if doc["copy"] else "hash only, the document was not copied"
    print(f"consent: {record['name']} for the {record['set']} set, recorded {record['recorded_at']}; "
          f"{doc['name']} SHA-256 {doc['sha256']} ({kept})")
    return 0


def _list(args: argparse.Namespace) -> int:
    opts = from_namespace(ConsentListOptions, args)
    from pipeline.provenance.consent import read_records
    from pipeline.workspace.layout import require
    records = read_records(require(opts.workspace))
    if opts.json:
        print(json.dumps(records, indent=2))
    elif not records:
        print(f"consent: none recorded in {opts.workspace} ('main.py consent add --set src --name NAME "
              f"--document FILE')")
    for r in records if not opts.json else []:
        print(f"consent: {r['set']}: {r['name']}, {r['recorded_at']}, {r['document']['name']} "
              f"SHA-256 {r['document']['sha256']}" + (f", copy {r['document']['copy']}" if r['document']['copy']
                                                       else ""))
    return 0


COMMAND = Command(
    "consent", help="record the consent of the people whose faces are used",
    description="Record who agreed to the use of their face, when, and the SHA-256 of the signed release (the "
                "document is copied into the workspace only with --copy). convert states in the video's content "
                "credentials whether consent was recorded (hashes and dates, not names) and says so when none "
                "was; nothing is refused.",
    subcommands_help="add a record or list them",
    subcommands=(
        Command("add", help="record one person's consent and the hash of their signed release",
                description="Adds a record to the workspace's consent_records.json (written atomically): set, name, "
                            "UTC time, the document's name, size and SHA-256; with --copy the document too.",
                options=(ConsentAddOptions,), run=_add),
        Command("list", help="print the workspace's consent records",
                description="The records consent add wrote, oldest first.", options=(ConsentListOptions,),
                run=_list),
    ),
    check_environment=False)
