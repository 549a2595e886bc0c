"""Before and after photos of a work order for the reviewer, side by side. Plain Python.

Before: the report's evidence (photos linked as `report`, `evidence` or a camera's `snapshot`).
After: the unit's rectification photos (linked as `after`), plus the after-photos in the task's
form data when the pulled task carries them (`task["data"]["after_photos"]`: sha256s), which may
not be linked to the order yet.

    view = OrderPhotos(server, token, cache).fetch(number)      # fieldapp.orders
    shown = compare(view, task, lang)    # {"before": [...], "after": [...], "state", "message"}"""
from __future__ import annotations

from typing import Any, Mapping

from fieldapp import i18n

__all__ = ["AFTER_KINDS", "BEFORE_KINDS", "compare"]

BEFORE_KINDS = ("report", "evidence", "snapshot")
AFTER_KINDS = ("after",)
AFTER_FIELD = "after_photos"

i18n.add({
    "review.before": ("整改前", "Before"),
    "review.after": ("整改后", "After"),
    "review.before_hint": ("上报时的证据照片", "the report's evidence"),
    "review.after_hint": ("责任单位的整改照片", "the unit's rectification photos"),
    "review.none_before": ("没有上报照片", "No photos with the report"),
    "review.none_after": ("责任单位尚未上传整改后照片", "The unit has sent no after-photos yet"),
    "review.offline_no_cache": ("当前离线，联网后即可查看照片。", "Offline: photos available once online."),
    "review.cached": ("当前离线，显示的是上次保存的照片。", "Offline: showing the photos saved last time."),
    "review.photo_offline": ("联网后可查看", "Available once online"),
    "review.photo_missing": ("服务器上缺少此照片", "The server does not have this photo"),
    "review.photo_corrupt": ("照片下载损坏，联网后重试", "The download was damaged; retried once online"),
    "review.photo_refused": ("无权查看此照片", "Not allowed to see this photo"),
    "review.photo_pending": ("尚未上传到服务器", "Not on the server yet"),
    "review.kind.report": ("上报", "Report"),
    "review.kind.evidence": ("证据", "Evidence"),
    "review.kind.snapshot": ("摄像头截图", "Camera snapshot"),
    "review.kind.after": ("整改后", "After"),
    "review.count": ("{n} 张", "{n} photos"),
    "review.count_one": ("1 张", "1 photo"),
})


def _item(photo: Any, lang: str | None) -> dict:
    problem = photo.problem if photo.path is None else None
    caption = i18n.t(f"review.kind.{photo.kind}", lang) if photo.kind in BEFORE_KINDS + AFTER_KINDS else photo.kind
    return {"sha256": photo.sha256, "kind": photo.kind, "path": photo.path, "caption": caption,
            "problem": i18n.t(f"review.photo_{problem or 'offline'}", lang) if photo.path is None else ""}


def compare(view: Any, task: Mapping | None = None, lang: str | None = None) -> dict:
    """Display lists for the two sides, and the state line ('' when all is well)."""
    photos = list(getattr(view, "photos", []) or [])
    before = [_item(p, lang) for p in photos if p.kind in BEFORE_KINDS]
    after = [_item(p, lang) for p in photos if p.kind in AFTER_KINDS]
    known = {p.sha256 for p in photos}
    data = (task or {}).get("data") or {}
    for sha in data.get(AFTER_FIELD) or ():
        if isinstance(sha, str) and sha not in known:
            known.add(sha)
            after.append({"sha256": sha, "kind": "after", "path": None, "caption": i18n.t("review.kind.after", lang),
                          "problem": i18n.t("review.photo_pending", lang)})
    state = getattr(view, "state", "offline_no_cache")
    message = {"ok": "", "cached": i18n.t("review.cached", lang),
               "offline_no_cache": i18n.t("review.offline_no_cache", lang)}.get(state, "")
    unknown = state == "offline_no_cache"    # never seen: "none" or "0 photos" would be a guess; `message` says it
    return {"number": getattr(view, "number", ""), "state": state, "message": message,
            "before": before, "after": after,
            "before_title": i18n.t("review.before", lang), "after_title": i18n.t("review.after", lang),
            "before_hint": i18n.t("review.before_hint", lang), "after_hint": i18n.t("review.after_hint", lang),
            "before_empty": "" if before or unknown else i18n.t("review.none_before", lang),
            "after_empty": "" if after or unknown else i18n.t("review.none_after", lang),
            "before_count": "" if unknown else _count(len(before), lang),
            "after_count": "" if unknown else _count(len(after), lang)}


def _count(n: int, lang: str | None) -> str:
    return i18n.t("review.count_one", lang) if n == 1 else i18n.t("review.count", lang, n=n)
