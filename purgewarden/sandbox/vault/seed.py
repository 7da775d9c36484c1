"""Deterministic demo data for the Vault emulator, and a fast builder for big collections.

Ids are uuid5s of fixed names, and every time is an offset from the moment of the reset, so the
demo always holds the same things at the same ages: some archived past the 30-day retention, some
archived recently, tokens past retention and orphaned transaction ids, so GC reports all four types.

API keys: `pvaultauth` (admin, every capability), `pvault-reader` (collections, read, search),
`pvault-deleter` (collections, read, delete; no search, no GC) and `pvault-acme` (data capabilities,
bound to tenant "acme"). Objects belong to tenant "acme", or "globex" for every third one.
"""

from __future__ import annotations

import uuid
from itertools import chain, cycle, repeat
from typing import Any

from purgewarden.sandbox.vault.store import (
    ApiKey,
    Capability,
    Collection,
    CollectionStore,
    Property,
    Token,
    VaultObject,
)

DEMO_API_KEY = "pvaultauth"
READER_API_KEY = "pvault-reader"
DELETER_API_KEY = "pvault-deleter"
ACME_API_KEY = "pvault-acme"

DAY = 86_400.0
NAMESPACE = uuid.UUID("6f1b8a52-3c0e-4c8e-9a57-2f5d0e7c9b10")

_FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Leslie", "Hedy")
_LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman")
_COUNTRIES = ("US", "DE", "IL", "FR", "GB", "JP")
_ITEMS = ("notebook", "keyboard", "monitor", "headset", "dock", "webcam", "cable")

CUSTOMER_PROPERTIES = (
    Property("name", "NAME", "Full name"),
    Property("email", "EMAIL", "Contact email", is_unique=True),
    Property("phone", "PHONE_NUMBER", "Contact phone"),
    Property("country", "STRING", "ISO country code"),
)
ORDER_PROPERTIES = (
    Property("customer_id", "STRING", "Id of the customer object"),
    Property("item", "STRING"),
    Property("amount", "INTEGER", "Amount in cents"),
    Property("status", "STRING"),
)
LEAD_PROPERTIES = (Property("email", "EMAIL"), Property("source", "STRING"))


def api_keys() -> dict[str, ApiKey]:
    every = frozenset(Capability)
    data = frozenset(
        {
            Capability.COLLECTIONS_READER,
            Capability.DATA_READER,
            Capability.DATA_SEARCHER,
            Capability.DATA_WRITER,
            Capability.DATA_DELETER,
        }
    )
    keys = (
        ApiKey(DEMO_API_KEY, "admin", every),
        ApiKey(
            READER_API_KEY,
            "Analyst",
            frozenset({Capability.COLLECTIONS_READER, Capability.DATA_READER, Capability.DATA_SEARCHER}),
        ),
        ApiKey(
            DELETER_API_KEY,
            "Cleaner",
            frozenset({Capability.COLLECTIONS_READER, Capability.DATA_READER, Capability.DATA_DELETER}),
        ),
        ApiKey(ACME_API_KEY, "AcmeApp", data, tenants=frozenset({"acme"})),
    )
    return {key.secret: key for key in keys}


def object_id(collection: str, index: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{collection}/{index}"))


def _tenant(index: int) -> str:
    return "globex" if index % 3 == 2 else "acme"


def demo_stores(now: float) -> dict[str, CollectionStore]:
    created = now - 400 * DAY
    customers = CollectionStore(Collection("customers", "PERSONS", CUSTOMER_PROPERTIES, created, created))
    orders = CollectionStore(Collection("orders", "DATA", ORDER_PROPERTIES, created, created + DAY))
    leads = CollectionStore(
        Collection("leads", "DATA", LEAD_PROPERTIES, created + 2 * DAY, created + 2 * DAY)
    )

    # 40 active, 10 archived 45 days ago (past retention), 5 archived 3 days ago.
    customers.add_objects(
        [
            VaultObject(
                object_id("customers", i),
                _tenant(i),
                _customer_fields(i),
                created + i * DAY,
                created + i * DAY,
                None if i < 40 else now - (45 if i < 50 else 3) * DAY + i * 60,
            )
            for i in range(55)
        ]
    )
    # 22 active, 6 archived 60 days ago, 2 archived 10 days ago.
    orders.add_objects(
        [
            VaultObject(
                object_id("orders", i),
                _tenant(i % 40),
                {
                    "customer_id": object_id("customers", i % 40),
                    "item": _ITEMS[i % len(_ITEMS)],
                    "amount": 1_000 + 250 * i,
                    "status": ("paid", "shipped", "refunded")[i % 3],
                },
                created + (100 + i) * DAY,
                created + (100 + i) * DAY,
                None if i < 22 else now - (60 if i < 28 else 10) * DAY + i * 60,
            )
            for i in range(30)
        ]
    )
    # Tokens: each tokenize call makes its own transaction id; some transactions lost their tokens.
    for store, archived_ages in ((customers, (40,) * 7 + (5,) * 2 + (None,) * 3), (orders, (50,) * 4)):
        name = store.collection.name
        for i, age in enumerate(archived_ages):
            store.add_token(
                Token(
                    str(uuid.uuid5(NAMESPACE, f"{name}/token/{i}")),
                    str(uuid.uuid5(NAMESPACE, f"{name}/transaction/{i}")),
                    None if age is None else now - age * DAY + i * 60,
                )
            )
        for i in range(4 if store is customers else 2):
            store.add_orphan_transaction(str(uuid.uuid5(NAMESPACE, f"{name}/orphan/{i}")))
    return {store.collection.name: store for store in (customers, orders, leads)}


def _customer_fields(i: int) -> dict[str, Any]:
    first, last = _FIRST[i % len(_FIRST)], _LAST[i % len(_LAST)]
    return {
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower()}{i}@example.com",
        "phone": f"+1-555-{i:07d}",
        "country": _COUNTRIES[i % len(_COUNTRIES)],
    }


def build_large(
    store: CollectionStore, n: int, *, archived: int, archived_at: float, now: float
) -> list[str]:
    """Add `n` objects (the first `archived` of them archived at `archived_at`) and return their ids.

    Ids share a uuid5 prefix per batch and end in a counter, so they are unique, valid and already in
    sorted order. Strings are made by `map` over `str.format` and objects by `map` over the class,
    which keeps 100,000 objects well under a second.
    """
    prefix = str(uuid.uuid5(NAMESPACE, f"{store.collection.name}/batch/{len(store.objects)}"))[:24]
    ids = list(map((prefix + "{:012x}").format, range(n)))
    names = store.collection.property_names
    if names == tuple(p.name for p in CUSTOMER_PROPERTIES):
        columns = zip(
            map("Customer {}".format, range(n)),
            map("customer{}@example.com".format, range(n)),
            map("+1-555-{:07d}".format, range(n)),
            cycle(_COUNTRIES),
        )
        values = [{"name": a, "email": b, "phone": c, "country": d} for a, b, c, d in columns]
    else:
        values = [{name: f"{name}-{i}" for name in names} for i in range(n)]
    archived_ats = chain(repeat(archived_at, min(archived, n)), repeat(None, max(n - archived, 0)))
    tenants = cycle(("acme", "acme", "globex"))
    store.add_objects(list(map(VaultObject, ids, tenants, values, repeat(now), repeat(now), archived_ats)))
    return ids
