"""`cityloop badge key|register` (server side: keys never leave through the API) and the
radio-side commands of devices/ (badge-pair, badge-gateway, badge-sim), hung on the main
command line (engine/cli.py)."""
from __future__ import annotations

import functools
import sys


def _key(args, engine_of, cli_error) -> int:
    """Print a rotating badge's master key (hex) for the badge programmer, making one if it
    has none. The key is never sent over the API; keep the output off shared screens."""
    from engine.domain import badges
    with engine_of(args).transaction() as s:
        key, made = badges.provision_key(s, args.badge_id)
    print(key.hex())
    print(f"{'new key provisioned' if made else 'existing key'} for badge {args.badge_id} "
          f"/ {'已生成新密钥' if made else '已有密钥'}", file=sys.stderr)
    return 0


def _register_badge(args, engine_of, cli_error) -> int:
    from engine.domain import badges
    try:
        beacon = badges.parse_beacon(args.ibeacon) if args.ibeacon else None
    except ValueError as exc:
        raise cli_error(f"--ibeacon: {exc}") from None
    kind = "legacy" if beacon else "rotating"
    with engine_of(args).transaction() as s:
        badges.register(s, args.badge_id, kind, beacon=beacon)
    print(f"registered {kind} badge {args.badge_id}" + (f" ({args.ibeacon})" if beacon else
                                                         f"; its key: cityloop badge key {args.badge_id}")
          + " / 工牌已登记")
    return 0


def _crew_keys(args, engine_of, cli_error) -> list[tuple[str, bytes]]:
    """badge-sim --crew: the crew's active rotating badges and their keys (provisioned if missing)."""
    from sqlmodel import select
    from engine.domain import badges
    from engine.domain.models import Badge, Cleaner
    with engine_of(args).transaction() as s:
        ids = s.exec(select(Cleaner.badge_id).where(Cleaner.crew_code == args.crew, Cleaner.badge_id.is_not(None))
                     .order_by(Cleaner.id)).all()
        if not ids:
            raise cli_error(f"no crew {args.crew!r} with badges / 没有该班组或班组没有工牌")
        rotating = [b for b in ids if (badge := s.get(Badge, b)) is not None and badge.kind == "rotating" and badge.active]
        return [(b, badges.provision_key(s, b)[0]) for b in rotating]


def register(sub, engine_of, cli_error) -> None:
    """Add the badge commands to the `cityloop` subparsers; `engine_of(args)` opens the engine."""
    def bound(fn):
        return functools.partial(fn, engine_of=engine_of, cli_error=cli_error)

    bd = sub.add_parser("badge", help="staff badges").add_subparsers(dest="badge_command", required=True, metavar="ACTION")
    bk = bd.add_parser("key", help="print a badge's key for the badge programmer (made if missing)")
    bk.add_argument("badge_id", metavar="BADGE")
    bk.set_defaults(func=bound(_key))
    br = bd.add_parser("register", help="register a rotating badge (or a legacy iBeacon with --ibeacon)")
    br.add_argument("badge_id", metavar="BADGE")
    br.add_argument("--ibeacon", metavar="UUID:MAJOR:MINOR", help="a static legacy iBeacon badge (unverified)")
    br.set_defaults(func=bound(_register_badge))

    from devices.cli import register as register_radio_commands   # badge-pair, badge-gateway, badge-sim
    register_radio_commands(sub, crew_keys=bound(_crew_keys))
