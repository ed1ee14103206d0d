"""Classification rules: which tiers an object of a classification may live in.

``classification.rules`` in the settings maps a classification to its :class:`ClassificationRule`.
The default keeps ``restricted`` objects out of the hot tier (Redis) and shared memory, and in
encrypted stores only::

    classification:
      rules:
        restricted: {tiers: [warm, cold, archive], encrypted_only: true, shm: false}
        internal:   {tiers: [hot, warm, cold]}          # never archived, say
      encrypted_stores: [warm]                           # the catalog sits on encrypted disks

A tier counts as encrypted when its store is envelope-encrypted (``encryption.envelope`` and
the tier in ``encryption.tiers``) or named in ``encrypted_stores``. The service refuses a write
no permitted tier can take (:class:`~liquid.errors.ClassificationRefused`), and bears a small
object into a colder permitted tier when the warm one is not; the planner never plans a move or
a hot copy a rule forbids, and the hot fill refuses one too.
"""

from __future__ import annotations

from liquid.config import CATALOG_STORE, DURABLE_TIERS, ClassificationRule, Settings, Tier
from liquid.errors import ClassificationRefused


class Classifier:
    """Answers "may an object of classification C live in tier T here?" from the settings."""

    def __init__(self, settings: Settings) -> None:
        self.rules = dict(settings.classification.rules)
        declared = set(settings.classification.encrypted_stores)
        enc = settings.encryption
        self.encrypted: set[str] = set()
        self.stores: dict[str, str | None] = {}
        tiers: tuple[Tier, ...] = ("hot", "warm", "cold", "archive")
        for tier in tiers:
            name = settings.store_for(tier)
            self.stores[tier] = name
            if name is None or tier == "hot":
                continue
            envelope = enc.envelope and tier in enc.tiers and name != CATALOG_STORE
            if envelope or name in declared:
                self.encrypted.add(tier)

    def __repr__(self) -> str:
        return f"Classifier(rules={sorted(self.rules)}, encrypted={sorted(self.encrypted)})"

    def rule(self, classification: str | None) -> ClassificationRule | None:
        return None if classification is None else self.rules.get(classification)

    def allows(self, classification: str | None, tier: str) -> bool:
        """Whether an object of ``classification`` may have a home or copy in ``tier``."""
        rule = self.rule(classification)
        if rule is None:
            return True
        if tier not in rule.tiers:
            return False
        return not rule.encrypted_only or tier in self.encrypted

    def allows_shm(self, classification: str | None) -> bool:
        rule = self.rule(classification)
        return rule is None or rule.shm

    def birth_tier(self, classification: str | None, tier: Tier) -> Tier:
        """``tier`` if permitted, else the next colder durable tier that is; raises if none is.

        Raises:
            ClassificationRefused: no durable tier with a store permits this classification.
        """
        if self.allows(classification, tier):
            return tier
        for colder in (
            DURABLE_TIERS[DURABLE_TIERS.index(tier) + 1 :] if tier in DURABLE_TIERS else DURABLE_TIERS
        ):
            if self.stores.get(colder) is not None and self.allows(classification, colder):
                return colder
        rule = self.rule(classification)
        assert rule is not None
        need = " encrypted" if rule.encrypted_only else ""
        encrypted = ", ".join(sorted(self.encrypted)) or "none"
        raise ClassificationRefused(
            f"classification {classification!r} may live only in{need} tiers {', '.join(rule.tiers)}; "
            f"this deployment has none for it (encrypted here: {encrypted}). "
            "Turn on encryption.envelope for cold/archive, or list a store encrypted at rest in "
            "classification.encrypted_stores",
            field="classification",
        )
