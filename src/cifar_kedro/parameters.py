"""Parameters checked at start-up, with messages that say what is wrong, where it was set, and what
is allowed.

The schemas are the Pydantic models the pipelines' nodes are type-hinted with (found the way
Kedro's own ``kedro.validation.TypeExtractor`` finds them), and Kedro's ``ParameterValidator``
turns the parameters into those models. This module adds what Kedro leaves out: a parameter block
no pipeline knows (``--params "cnn_trainng.seed=1"``) is an error too, and each problem names the
full key, the files (or ``--params``) that set it, and the allowed values or the nearest known key.
``ParameterCheckHooks`` runs it when the context is created, so nothing is read or built first.

Each pipeline's parameters live under its own name (``conf/base/parameters_<pipeline>.yml`` holds
``<pipeline>:``), so the known blocks are the pipeline packages and ``runtime``; like Kedro, a run checks the
blocks of the pipelines it loads (``kedro run --pipelines a,b`` loads only those).
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from kedro.validation import ParameterValidationError
from kedro.validation.type_extractor import TypeExtractor
from pydantic import BaseModel, ValidationError


def schemas(pipelines: Mapping[str, Any]) -> dict[str, type[BaseModel]]:
    """Top-level parameter key → the Pydantic model the pipelines' nodes expect for it."""
    return {
        key: model
        for key, model in TypeExtractor(dict(pipelines)).extract_types_from_pipelines().items()
        if isinstance(model, type) and issubclass(model, BaseModel)
    }


def known_blocks(package: str = "cifar_kedro.pipelines") -> list[str]:
    """The top-level parameter keys the project knows: one per pipeline package, and ``runtime``
    (the run-wide block, ``schemas.Runtime``)."""
    return sorted(["runtime", *(module.name for module in pkgutil.iter_modules(importlib.import_module(package).__path__)
                                if module.ispkg)])


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a": {...}, "a.b": 1}``: every key path of nested dicts."""
    flat: dict[str, Any] = {}
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            flat[path] = value
            flat.update(flatten(value, path))
    return flat


def parameter_sources(conf_source: str | Path, envs: Iterable[str], runtime_params: Mapping | None,
                      patterns: Iterable[str] = ("parameters*", "parameters*/**", "**/parameters*")) -> dict[str, list[str]]:
    """Key path → where it is set, in merge order: the parameters files of each environment, then
    ``--params``. Paths are relative to the project (``conf/base/parameters_x.yml``)."""
    root = Path(conf_source)
    sources: dict[str, list[str]] = {}
    for env in envs:
        folder = root / env
        files = sorted({path for pattern in patterns for path in folder.glob(pattern)
                        if path.is_file() and path.suffix in (".yml", ".yaml")})
        for path in files:
            try:
                tree = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError:
                continue  # the config loader reports broken YAML itself
            for key in flatten(tree):
                sources.setdefault(key, []).append(f"{root.name}/{env}/{path.relative_to(folder).as_posix()}")
    for key in flatten(runtime_params or {}):
        sources.setdefault(key, []).append("--params")
    return sources


def check(params: Mapping[str, Any], models: Mapping[str, type[BaseModel]],
          sources: Mapping[str, list[str]], known: Iterable[str] = ()) -> list[str]:
    """Every problem of ``params`` against ``models`` (and top-level keys outside ``known``, which
    defaults to the keys of ``models``), one readable line each; empty when all is well."""
    known = sorted(set(known) | set(models))
    problems = []
    for key in params:
        if key not in known:
            problems.append(_unknown(key, known, sources, parent=None))
    for key, model in models.items():
        if key not in params:
            continue
        try:
            model.model_validate(params[key])
        except ValidationError as error:
            explained: dict[str, list[str]] = {}  # a union (number | schedule) fails once per alternative
            for detail in error.errors():
                path, text = _explain(key, model, detail, sources)
                explained.setdefault(path, []).append(text)
            problems += [texts[0] if len(texts) == 1 else f"{texts[0]} Or, {'; or, '.join(t.rpartition(': ')[2] for t in texts[1:])}"
                         for texts in explained.values()]
    return problems


def raise_if_invalid(params: Mapping[str, Any], models: Mapping[str, type[BaseModel]],
                     sources: Mapping[str, list[str]], known: Iterable[str] = ()) -> None:
    problems = check(params, models, sources, known)
    if problems:
        raise ParameterValidationError(
            f"{len(problems)} parameter problem(s); nothing was run:\n" + "\n".join(f"- {p}" for p in problems)
        )


# ---------------------------------------------------------------------------- messages
def _where(path: str, sources: Mapping[str, list[str]]) -> str:
    """Where ``path`` (or, failing that, its nearest parent) is set."""
    probe = path
    while probe:
        if probe in sources:
            found = " then ".join(dict.fromkeys(sources[probe]))
            return f"set in {found}" if probe == path else f"under {probe}, set in {found}"
        probe = probe.rpartition(".")[0]
    return "not set anywhere"


def _fields(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The sub-model reached by the field names in ``loc`` (list indices are stepped over)."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        candidates = [field.annotation, *getattr(field.annotation, "__args__", ())]
        for inner in list(candidates):
            candidates += list(getattr(inner, "__args__", ()))
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return None
        model = nested[0]
    return model


def _all_paths(model: type[BaseModel], prefix: str) -> list[str]:
    paths = []
    for name in model.model_fields:
        path = f"{prefix}.{name}"
        paths.append(path)
        inner = _model_at(model, (name,))
        if inner is not None:
            paths += _all_paths(inner, path)
    return paths


def _unknown(path: str, allowed: list[str], sources: Mapping[str, list[str]], parent: type[BaseModel] | None,
             root: tuple[str, type[BaseModel]] | None = None) -> str:
    name = path.rpartition(".")[2]
    hint = ""
    close = difflib.get_close_matches(name, allowed, n=1)
    if close:
        hint = f" Did you mean '{path.rpartition('.')[0] + '.' if '.' in path else ''}{close[0]}'?"
    elif root is not None:
        elsewhere = [p for p in _all_paths(root[1], root[0]) if p.rpartition(".")[2] == name]
        if elsewhere:
            hint = f" '{name}' belongs under {' or '.join(elsewhere)}."
    return (f"'{path}' is not a known parameter ({_where(path, sources)}).{hint} "
            f"Allowed here: {', '.join(allowed)}.")


def _explain(key: str, model: type[BaseModel], detail: dict, sources: Mapping[str, list[str]]) -> tuple[str, str]:
    """The key path ``detail`` is about, and what is wrong with it."""
    loc = tuple(part for part in detail["loc"] if not str(part).startswith("function-"))
    # Pydantic tags a union's alternatives (float | Schedule) in loc: keep the field names only.
    fields = [part for part in loc if isinstance(part, int) or not _is_type_tag(str(part))]
    path = ".".join([key, *map(str, fields)])
    if detail["type"] == "extra_forbidden":
        parent = _model_at(model, tuple(fields[:-1]))
        allowed = _fields(parent) if parent is not None else []
        return path, _unknown(path, allowed, sources, parent, root=(key, model))
    if detail["type"] == "missing":
        return path, f"'{path}' is missing ({_where(path, sources)}): add it, e.g. to conf/base/parameters_{key}.yml."
    message = detail["msg"]
    if detail["type"] == "model_type" and "Schedule" in map(str, loc):
        message = "a schedule is {knots: [[0, rate], ..., [1, rate]]} (fractions of the stage's epochs)"
    return path, f"'{path}' = {detail.get('input')!r} ({_where(path, sources)}): {message}."


def _is_type_tag(part: str) -> bool:
    return part in {"float", "int", "bool", "str", "none", "list", "dict", "tuple"} or part[:1].isupper() \
        or part.startswith(("constrained-", "literal[", "function-", "list[", "tuple[", "dict["))
