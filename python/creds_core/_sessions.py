"""Many boto3 sessions that share what botocore would otherwise build once per session.

A plain ``boto3.Session()`` with one S3 client costs about 12 MB and 0.3 s on the project's
machine: every botocore session has its own data loader (so every session parses the service
models and the endpoint data again), registers some 6,500 built-in event handlers, builds its
own endpoint resolver, and every client builds its own client class (a method per operation)
and endpoint rule set.  A program that works on 1,000 accounts at once pays that 1,000 times.

The sessions made by a :class:`SessionTemplate` share, for one botocore data ``Loader``:

* the loader itself (service models, endpoint data and boto3's resource models parsed once);
* the built-in event handlers: every emitter (the template's, each session's and each of their
  clients') holds its handlers in a :class:`PersistentTrie`, so copies share the table and a
  registration copies only the few nodes it changes; sessions and clients stay independent;
* the endpoint resolver, the default-configuration resolver, the exceptions factory (modeled
  exception classes are built once per service) and the response parser factory;
* client classes: a client's class is a tiny subclass of one class per service and
  customisation (see :class:`ClientClassCache`);
* endpoint rule sets: clients of one service share one parsed rule set (and its resolution
  cache).

What stays per session: credentials, configuration (instance variables, config store), the
user-agent creator and anything registered on the session.  What stays per client: what
botocore keeps per client (its event emitter, HTTP connection pool, service model, ...).
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import boto3
import botocore
import botocore.session
from botocore import hooks as _hooks
from botocore.hooks import HierarchicalEmitter

__all__ = [
    "ClientClassCache",
    "PersistentTrie",
    "SessionTemplate",
    "copy_emitter",
    "sharing_supported",
    "template_for",
    "warn_once",
]

# boto3 keeps its resource models here; it appends this path to every session's loader.
_BOTO3_DATA = os.path.join(os.path.dirname(boto3.__file__), "data")

LOG = logging.getLogger(__name__)

# botocore's trie and its "middle" section (not in the type stubs).  Internals: when a botocore
# version lacks one, sessions are not shared (see :func:`sharing_supported`), never a crash.
_PrefixTrie: Any = getattr(_hooks, "_PrefixTrie", None)
_MIDDLE: int = getattr(_hooks, "_MIDDLE", 1)

# The botocore internals a template relies on, checked once.
_REQUIRED_INTERNALS: tuple[tuple[Any, str], ...] = (
    (_hooks, "_PrefixTrie"),
    (_hooks, "_MIDDLE"),
    (_hooks, "NodeList"),
    (botocore.session.Session, "_get_internal_component"),
    (boto3.Session, "_setup_loader"),
    (boto3.Session, "_register_default_handlers"),
)

_WARNED: set[str] = set()
_WARNED_LOCK = threading.Lock()


def warn_once(what: str, exc: BaseException | None = None) -> None:
    """Log once per process that a botocore internal is missing and the plain path is used."""
    with _WARNED_LOCK:
        if what in _WARNED:
            return
        _WARNED.add(what)
    LOG.warning(
        "botocore %s: %s%s; creds_core uses botocore's plain path there instead",
        botocore.__version__,
        what,
        f" ({type(exc).__name__}: {exc})" if exc is not None else "",
    )


def sharing_supported() -> bool:
    """Whether this botocore has the internals that sessions made by a template share."""
    missing = [
        f"{getattr(o, '__name__', o)}.{n}" for o, n in _REQUIRED_INTERNALS if not hasattr(o, n)
    ]
    if missing:
        warn_once(f"missing {', '.join(missing)}: role sessions are built as plain sessions")
        return False
    return True


# Guards the one-time change of a loader's search path.
_PATH_LOCK = threading.Lock()


def _copy_node(node: dict[str, Any]) -> dict[str, Any]:
    return {"chunk": node["chunk"], "values": node["values"], "children": dict(node["children"])}


class PersistentTrie(_PrefixTrie if _PrefixTrie is not None else object):  # type: ignore[misc]
    """botocore's event-handler trie, made persistent: a change copies the nodes on its path
    instead of changing them, so a copy is O(1) and copies share every node they did not
    change.  botocore copies the whole trie (about 50 KB with the built-in handlers) for every
    session and again for every client; with this trie each pays only for what it registers.

    Nodes reachable from a trie are never mutated, so tries sharing them need no locking
    between them (a single trie is no more thread-safe than botocore's).
    """

    _root: dict[str, Any]

    def append_item(self, key: str, value: Any, section: int = _MIDDLE) -> None:
        root = current = _copy_node(self._root)
        for part in key.split("."):
            child = current["children"].get(part)
            child = (
                {"chunk": part, "values": None, "children": {}}
                if child is None
                else _copy_node(child)
            )
            current["children"][part] = child
            current = child
        old = current["values"]
        values = (
            _hooks.NodeList([], [], [])
            if old is None
            else _hooks.NodeList(list(old.first), list(old.middle), list(old.last))
        )
        values[section].append(value)
        current["values"] = values
        self._root = root

    def remove_item(self, key: str, value: Any) -> None:
        self._root = self._without(self._root, key.split("."), value, 0)

    def _without(
        self, node: dict[str, Any], parts: list[str], value: Any, index: int
    ) -> dict[str, Any]:
        child = node["children"].get(parts[index])
        if child is None:
            raise ValueError(f"key is not in trie: {'.'.join(parts)}")
        if index + 1 < len(parts):
            new_child = self._without(child, parts, value, index + 1)
        else:
            new_child = _copy_node(child)
            old = child["values"]
            if old is not None:
                lists = [list(old.first), list(old.middle), list(old.last)]
                for items in lists:
                    if value in items:
                        items.remove(value)
                        break
                new_child["values"] = _hooks.NodeList(*lists)
        new_node = _copy_node(node)
        if not new_child["children"] and not new_child["values"]:
            del new_node["children"][parts[index]]  # as botocore: prune empty leaves
        else:
            new_node["children"][parts[index]] = new_child
        return new_node

    def __copy__(self) -> PersistentTrie:
        new = self.__class__()
        new._root = self._root
        return new


def copy_emitter(emitter: HierarchicalEmitter) -> HierarchicalEmitter:
    """A private copy of ``emitter`` (what botocore's ``copy.copy`` gives, with a lookup cache
    of its own); O(1) for the trie when ``emitter`` uses a :class:`PersistentTrie`."""
    new = copy.copy(emitter)
    new._lookup_cache = {}  # type: ignore[attr-defined]
    return new


class ClientClassCache:
    """A ``creating-client-class`` handler that builds each client class once.

    botocore builds a new class for every client: one method object and one lazy docstring per
    operation (about 150 KB for S3).  Registered last, after every handler that customises the
    class, this handler keeps the first class built for a given service and customisation and
    turns the next ones into empty subclasses of it.  Two classes are the same customisation
    when they have the same bases, the same operation-to-method mapping, the same generated
    operation methods and the very same objects for every other attribute (so a handler that
    adds a fresh closure per client simply gets no sharing).
    """

    _GENERATED = "_create_api_method.<locals>._api_call"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._classes: dict[tuple[Any, ...], type] = {}

    def __len__(self) -> int:
        return len(self._classes)

    def _key(
        self, event_name: str, attributes: Mapping[str, Any], bases: list[type]
    ) -> tuple[Any, ...]:
        parts: list[tuple[Any, ...]] = []
        for name, value in attributes.items():
            if name == "_PY_TO_OP_NAME" and isinstance(value, Mapping):
                parts.append((name, "mapping", tuple(sorted(value.items()))))
            elif getattr(value, "__qualname__", "").endswith(self._GENERATED):
                parts.append((name, "operation", getattr(value, "__name__", name)))
            else:
                parts.append((name, "object", id(value)))
        return (event_name, tuple(bases), frozenset(parts))

    def __call__(
        self,
        class_attributes: dict[str, Any] | None = None,
        base_classes: list[type] | None = None,
        event_name: str = "",
        **_: Any,
    ) -> None:
        if class_attributes is None or base_classes is None:
            return
        key = self._key(event_name, class_attributes, base_classes)
        with self._lock:
            shared = self._classes.get(key)
            if shared is None:
                service = event_name.rsplit(".", 1)[-1] or "client"
                shared = type(f"Shared[{service}]", tuple(base_classes), dict(class_attributes))
                # Values of ``object`` parts are kept alive by the class, so their ids stay
                # unique for as long as the key is in the cache.
                self._classes[key] = shared
        class_attributes.clear()
        base_classes[:] = [shared]


class _TemplateBoto3Session(boto3.Session):
    """Registers boto3's handlers on the template; the loader already has boto3's path."""

    def _setup_loader(self) -> None:
        self._loader = self._session.get_component("data_loader")


class AccountSession(boto3.Session):
    """A boto3 Session over a botocore session made by a :class:`SessionTemplate`.

    The template's emitter already carries boto3's handlers and its loader boto3's data path,
    so building one neither registers them again nor grows the shared loader's search path.
    """

    def _setup_loader(self) -> None:
        self._loader = self._session.get_component("data_loader")

    def _register_default_handlers(self) -> None:
        pass


ClientHook = Callable[[botocore.session.Session, Any], None]


class AccountBotocoreSession(botocore.session.Session):
    """A botocore session made by a :class:`SessionTemplate` (see there for what it shares).

    ``on_client(session, client)`` is called for every client it creates, before the client
    is returned (creds_core registers its per-client hooks there).
    """

    def __init__(self, template: SessionTemplate, on_client: ClientHook | None = None) -> None:
        super().__init__(event_hooks=copy_emitter(template.emitter), include_builtin_handlers=False)
        self._template = template
        self._on_client = on_client
        template.share_components(self)

    @property
    def template(self) -> SessionTemplate:
        return self._template

    def create_client(self, *args: Any, **kwargs: Any) -> Any:
        client = super().create_client(*args, **kwargs)
        self._template.share_endpoint_rules(client)
        _drop_operation_models(client)
        if self._on_client is not None:
            self._on_client(self, client)
        return client


def _drop_operation_models(client: Any) -> None:
    """Forget the operation models botocore built for the client class's methods.

    Building a client's class makes an operation model for every operation (for docstrings),
    cached on the client's own service model: about 35 KB for S3, kept for the client's life
    although the shared class does not use them.  The ones the client needs are built again
    on first use, as botocore does for every other cached model part.
    """
    cache = getattr(client.meta.service_model, "_instance_cache", None)
    if isinstance(cache, dict):
        for key in [k for k in cache if isinstance(k, tuple) and k[:1] == ("operation_model",)]:
            cache.pop(key, None)


class SessionTemplate:
    """What every session made for one botocore data loader shares (see the module doc)."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        with _PATH_LOCK:
            if _BOTO3_DATA not in loader.search_paths:
                loader.search_paths.append(_BOTO3_DATA)
        emitter: Any = HierarchicalEmitter()
        emitter._handlers = PersistentTrie()
        # The one full build: botocore's built-in handlers, registered once per template.
        base: Any = botocore.session.Session(event_hooks=emitter)
        base.register_component("data_loader", loader)
        _TemplateBoto3Session(botocore_session=base)  # boto3's handlers, once
        self.client_classes = ClientClassCache()
        base.get_component("event_emitter").register_last(
            "creating-client-class",
            self.client_classes,
            unique_id="creds_core.shared-client-classes",
        )
        self._base = base
        self.emitter: HierarchicalEmitter = emitter
        self._internal = {
            name: base._get_internal_component(name)
            for name in ("endpoint_resolver", "exceptions_factory", "default_config_resolver")
        }
        self._response_parser_factory = base.get_component("response_parser_factory")
        self._rules_lock = threading.Lock()
        self._rules: dict[tuple[Any, ...], Any] = {}

    @property
    def endpoint_resolver(self) -> Any:
        return self._internal["endpoint_resolver"]

    def share_components(self, session: botocore.session.Session) -> None:
        session.register_component("data_loader", self.loader)
        session.register_component("response_parser_factory", self._response_parser_factory)
        internal: Any = session._internal_components  # type: ignore[attr-defined]
        for name, component in self._internal.items():
            internal.register_component(name, component)

    def share_endpoint_rules(self, client: Any) -> None:
        """Give ``client`` the template's parsed endpoint rule set for its service."""
        resolver = getattr(client, "_ruleset_resolver", None)
        provider = getattr(resolver, "_provider", None)
        if resolver is None or provider is None or getattr(provider, "ruleset", None) is None:
            return
        model = client.meta.service_model
        key = (
            model.service_name,
            model.api_version,
            type(provider),
            frozenset(getattr(provider, "_excluded_params", ())),
        )
        with self._rules_lock:
            shared = self._rules.setdefault(key, provider)
        if shared is not provider:
            resolver._provider = shared
            resolver._param_definitions = shared.ruleset.parameters

    def botocore_session(
        self,
        instance_variables: Mapping[str, Any] | None = None,
        on_client: ClientHook | None = None,
    ) -> AccountBotocoreSession:
        """A new botocore session with these instance variables (profile, region, ...)."""
        session = AccountBotocoreSession(self, on_client)
        for name, value in (instance_variables or {}).items():
            session.set_config_variable(name, value)
        return session

    def boto3_session(self, botocore_session: AccountBotocoreSession) -> AccountSession:
        return AccountSession(botocore_session=botocore_session)


_TEMPLATES_LOCK = threading.Lock()
# Keyed by id(loader): a template holds its loader, so the id stays unique while the entry
# exists, and the entry goes when the last session made from the template does.
_TEMPLATES: weakref.WeakValueDictionary[int, SessionTemplate] = weakref.WeakValueDictionary()


def template_for(loader: Any) -> SessionTemplate | None:
    """The template of a botocore data loader, shared by everyone while anyone holds it; None
    when this botocore lacks what templates rely on (the caller builds plain sessions)."""
    if not sharing_supported():
        return None
    with _TEMPLATES_LOCK:
        template = _TEMPLATES.get(id(loader))
        if template is None:
            try:
                template = SessionTemplate(loader)
            except (AttributeError, TypeError, KeyError) as exc:  # a botocore internal changed
                warn_once("building a shared session template failed", exc)
                return None
            _TEMPLATES[id(loader)] = template
        return template
