"""`gentbox domain …` and `gentbox inbox …`: the same services as the API, for the shell."""
from __future__ import annotations

import argparse

from appliance.config import Settings


def _print_records(records: list[dict]) -> None:
    for r in records:
        flag = "required" if r["required"] else "optional"
        print(f"  [{r['status']:>8}] {r['type']:<3} {r['host']:<22} {flag:<8} {r['value']}")
        if r.get("found") and r["status"] == "mismatch":
            print(f"             DNS has: {' | '.join(r['found'])}")
        for warning in r.get("warnings") or []:
            print(f"             warning: {warning}")


def cmd_domain(args: argparse.Namespace, settings: Settings, store) -> int:  # noqa: ANN001
    from appliance.services.domains import domains
    from appliance.services.identity import operators
    from appliance.services.domains.domains import normalize_domain
    with store.session() as db:
        name = normalize_domain(args.name) if getattr(args, "name", None) else None
        principal = operators.principal_for(db, args.as_user, domain=name)
        if args.action == "list":
            for d in domains.list_domains(db, principal):
                print(f"{d.name}\t{d.status}\t{d.domain_use}\tdmarc={d.dmarc_policy}")
            return 0
        if args.action == "add":
            domain = domains.add_domain(db, settings, principal, args.name, args.use, args.dmarc)
            db.flush()
            print(f"Added {domain.name}. Publish these records, then run `gentbox domain verify {domain.name}`:")
            _print_records(domains.domain_to_dict(db, settings, domain)["dns_records"])
        elif args.action == "check":
            result = domains.check_domain(db, settings, principal, name)
            print(f"{result['domain']} as DNS answers now ({result['checked_at']}):")
            _print_records(result["records"])
        elif args.action == "verify":
            domain = domains.verify_domain(db, settings, principal, name)
            print(f"{domain.name}: {domain.status}")
            _print_records(domains.domain_to_dict(db, settings, domain)["dns_records"])
        elif args.action == "rotate-dkim":
            domain = domains.rotate_dkim(db, settings, principal, name)
            print(f"New DKIM key for {domain.name}: publish the pending selector below, then verify; "
                  "signing switches once DNS shows it.")
            _print_records([r for r in domains.domain_to_dict(db, settings, domain)["dns_records"]
                            if r["purpose"] == "dkim"])
    return 0


def cmd_inbox(args: argparse.Namespace, settings: Settings, store) -> int:  # noqa: ANN001
    from appliance.services.identity import inboxes, operators
    with store.session() as db:
        address = getattr(args, "address", None)
        principal = operators.principal_for(db, args.as_user, domain=address.split("@")[-1].lower()
                                            if args.action == "create" and address else None,
                                            address=address if args.action != "create" else None)
        if args.action == "list":
            rows = inboxes.list_inboxes(db, principal, after=None, limit=10_000)
            counts = inboxes.counts(db, [i.id for i in rows])
            for i in rows:
                total, unread = counts.get(i.id, (0, 0))
                print(f"{i.address}\t{i.id}\t{i.status}\tmessages={total}\tunread={unread}")
            return 0
        if args.action == "create":
            inbox = inboxes.create_inbox(db, principal, args.address, args.display_name or "", args.timezone)
            print(f"Created {inbox.address} ({inbox.id}).")
            return 0
        inbox = _inbox_by_address(db, principal, address)
        if args.action in ("pause", "resume"):
            inboxes.update_inbox(db, principal, inbox.id, {"status": "paused" if args.action == "pause" else "active"})
            print(f"{inbox.address} is {inbox.status}.")
        elif args.action == "delete":
            inboxes.delete_inbox(db, principal, inbox.id)
            print(f"Deleted {address}; its tokens are revoked.")
    return 0


def _inbox_by_address(db, principal, address: str):  # noqa: ANN001, ANN202
    from appliance.services.identity import inboxes
    for inbox in inboxes.list_inboxes(db, principal, after=None, limit=10_000):
        if inbox.address == address.strip().lower():
            return inbox
    from appliance.errors import NotFoundError
    raise NotFoundError(f"No inbox {address}.")


def add_parsers(sub: argparse._SubParsersAction, runner) -> None:  # noqa: ANN001
    """Add the domain and inbox commands; runner opens the store and calls func_mail."""
    dom = sub.add_parser("domain", help="domains, DNS records and DKIM").add_subparsers(dest="action", required=True)
    p = dom.add_parser("add", help="add a domain and print the DNS records to publish")
    p.add_argument("name")
    p.add_argument("--use", choices=("existing_domain", "dedicated_subdomain"), default="existing_domain")
    p.add_argument("--dmarc", choices=("none", "quarantine", "reject"))
    dom.add_parser("list", help="the domains")
    for action, text in (("check", "what DNS says now (changes nothing)"),
                         ("verify", "check DNS and mark verified"), ("rotate-dkim", "start a DKIM key rotation")):
        dom.add_parser(action, help=text).add_argument("name")
    for q in dom.choices.values():
        q.add_argument("--as", dest="as_user", metavar="EMAIL", help="act as this user (default: the owner)")
        q.set_defaults(func=runner, func_mail=cmd_domain)
    inb = sub.add_parser("inbox", help="inboxes").add_subparsers(dest="action", required=True)
    p = inb.add_parser("create")
    p.add_argument("address")
    p.add_argument("--display-name")
    p.add_argument("--timezone")
    inb.add_parser("list")
    for action in ("pause", "resume", "delete"):
        inb.add_parser(action).add_argument("address")
    for q in inb.choices.values():
        q.add_argument("--as", dest="as_user", metavar="EMAIL", help="act as this user (default: the owner)")
        q.set_defaults(func=runner, func_mail=cmd_inbox)
