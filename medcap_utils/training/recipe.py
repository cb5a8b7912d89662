"""One validated reader for the recipes in ``configs/recipes/``.

Every recipe reader of the repository (BLIP, MedCSRA, MSMedCap, the XAI-LSTM captioner and
:meth:`TrainConfig.from_yaml`) goes through :func:`read_recipe`, so all of them merge the same way and
refuse the same mistakes.

Two shapes of recipe file exist and both are read by one rule:

* *section-keyed* (``medcsra-2025``, ``msmedcap-2024``, ``xai-lstm-2021``): a ``paper:`` section holds the
  whole recipe;
* *model-keyed* (``2q2t-2024``, ``uit-oggy-2025``, ``medblip-2025``): one section per model (``blip_base``,
  ``blip_large``, ``blip``) holds that model's whole recipe; it plays the part of ``paper:``.

Merge rule, lowest first (later layers win, mappings merge key by key at every depth, anything else —
lists, scalars, ``null`` — replaces)::

    schema defaults (BLIP only, the old MODEL_DEFAULTS) < paper (or the model section) < authors_code
    (variant "authors_code") < profile section (``demo:`` when profile == "demo") < the profile section's
    ``per_model.<model section>`` (model-keyed files) < variants[variant] < overrides

Only the paper layer must be complete: it must contain every required section (a model section without
``train:`` is refused instead of training with library defaults) and every ``train:`` mapping of the merged
recipe must state ``epochs``, ``lr`` and ``batch_size``. Every layer is checked on its own, so an error
names the layer it sits in (``demo.train.lr``, ``variants.full.freeze_vision``).

Types are strict (:func:`coerce`): an int field refuses 1.5 and ``True``; a float field takes ints;
a bool field takes only ``true``/``false``; unknown keys are refused. Floats written ``1e-3`` are floats:
PyYAML follows YAML 1.1, which needs a dot (``1.0e-3``) and would give the string ``"1e-3"``; the loader here
adds YAML 1.2's rule, so an unquoted ``1e-3`` is the number 0.001. A *quoted* number (``"1e-3"``) stays a
string and a float field refuses it — quoting says "text". Every error is a :class:`RecipeError` naming
the file, the dotted key, the expected type and the value found.

Each resolved recipe gets ``recipe_hash`` (:func:`recipe_hash`): sha256 of the canonical JSON of the
resolved values; every :class:`TrainConfig` the reader builds carries it, so a saved model records the
recipe it was trained with.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from medcap_utils.training.config import TrainConfig

#: Profiles a recipe may have a section for (the notebooks' ``profile`` parameter: their code path).
PROFILES = ("demo", "rocov2")
#: Top-level keys of a model-keyed file that are not model sections.
NON_MODEL_KEYS = {"authors_code", "variants", "differences", "comparison_models", "standin_comparison_models", "notes",
                  *PROFILES}
#: Key of a profile section holding, per model section, what that profile sets for that model only (merged right
#: after the profile section): e.g. the demo BLIP-large's size, the one thing that differs from the demo base.
PER_MODEL = "per_model"
#: A recipe's ``train:`` mapping must state these: the library defaults (1 epoch, lr 1e-4, batch 8) are no
#: paper's values.
TRAIN_REQUIRED = ("epochs", "lr", "batch_size")


class RecipeError(ValueError):
    """A recipe or profile that cannot be read as written; the message names file, key, expected and found."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float (YAML 1.2), not the string YAML 1.1 makes of it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_yaml(path: str | Path) -> Any:
    """A YAML file read with :class:`_Loader` (the recipe and profile rule for ``1e-3``)."""
    return yaml.load(Path(path).read_text(), Loader=_Loader)


# ---------------------------------------------------------------------------------------------- coercion

def _name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_name(a) for a in typing.get_args(tp))}]"
    if dataclasses.is_dataclass(tp):
        return f"mapping ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))


def _fail(file: str, key: str, tp: Any, value: Any, hint: str = "") -> RecipeError:
    return RecipeError(f"{file}: {key or '<top>'}: expected {_name(tp)}, found {value!r} "
                       f"({type(value).__name__}){hint}")


def coerce(value: Any, tp: Any, file: str, key: str, complete: bool = True) -> Any:
    """``value`` checked against the type ``tp`` (as written in a schema dataclass) and returned as the
    recipe value: ints widened to float for float fields, mappings of a dataclass type as dicts of the keys
    given. ``complete`` also requires the dataclass fields without default (off for the layers above paper)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, file, key, complete)
            except RecipeError as error:
                if isinstance(value, dict) and dataclasses.is_dataclass(arg):
                    raise error  # the mapping's own message says which key inside is wrong
        raise _fail(file, key, tp, value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _fail(file, key, tp, value, "; write true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _fail(file, key, tp, value, "; a whole number is required" if isinstance(value, float) else "")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        hint = ("; a quoted number is text: write it unquoted, e.g. 1.0e-3"
                if isinstance(value, str) and _is_number(value) else "")
        raise _fail(file, key, tp, value, hint)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _fail(file, key, tp, value)
    if tp in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _fail(file, key, tp, value)
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(value):
            raise _fail(file, key, tp, value, f"; {len(args)} items needed")
        item = args[0] if args else Any
        return [coerce(v, item, file, f"{key}[{i}]", complete) for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise _fail(file, key, tp, value)
        item = typing.get_args(tp)[1] if typing.get_args(tp) else Any
        return {k: coerce(v, item, file, f"{key}.{k}", complete) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _coerce_mapping(value, tp, file, key, complete)
    raise TypeError(f"schema type {tp!r} at {key} is not supported")  # a bug in a schema, not in a recipe


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _coerce_mapping(value: Any, cls: type, file: str, key: str, complete: bool) -> dict:
    if not isinstance(value, dict):
        raise _fail(file, key, cls, value)
    hints = typing.get_type_hints(cls)
    # recipe_hash is computed from the values, never written: a written one could claim any recipe
    fields = {f.name: f for f in dataclasses.fields(cls) if not (cls is TrainConfig and f.name == "recipe_hash")}
    where = f"{key}." if key else ""
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise RecipeError(f"{file}: {where}{unknown[0]}: unknown key (found {value[unknown[0]]!r}); "
                          f"{cls.__name__} keys are {sorted(fields)}")
    out = {k: coerce(v, hints[k], file, f"{where}{k}", complete) for k, v in value.items()}
    if complete:
        missing = [n for n, f in fields.items() if n not in value and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if cls is TrainConfig:
            missing = [n for n in TRAIN_REQUIRED if n not in value]
        if missing:
            raise RecipeError(f"{file}: {where}{missing[0]}: required {_name(hints[missing[0]])} is missing "
                              f"(found keys {sorted(value)})")
        for name, f in fields.items():  # a section whose schema has defaults may still have to state some keys
            given, needed = value.get(name), f.metadata.get("required_keys", ())
            absent = [k for k in needed if isinstance(given, dict) and k not in given]
            if absent:
                sub = typing.get_type_hints(hints[name])
                raise RecipeError(f"{file}: {where}{name}.{absent[0]}: required {_name(sub[absent[0]])} is missing "
                                  f"(found keys {sorted(given)})")
    if hasattr(cls, "from_mapping"):  # a schema that checks its own values (DecodingConfig: ranges)
        try:
            cls.from_mapping(out)
        except ValueError as error:
            raise RecipeError(f"{file}: {key or '<top>'}: {error}") from None
    return out


# ------------------------------------------------------------------------------------------------ merging

def merge(base: Any, over: Any) -> Any:
    """``over`` merged over ``base``: mappings key by key at every depth, anything else replaces."""
    if not (isinstance(base, dict) and isinstance(over, dict)):
        return copy.deepcopy(over)
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out.get(k), v) if k in out else copy.deepcopy(v)
    return out


def recipe_hash(values: dict) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces) of resolved values, TrainConfigs as their fields
    without ``recipe_hash``."""
    def plain(v):
        if isinstance(v, TrainConfig):
            return {k: plain(x) for k, x in v.to_dict().items() if k != "recipe_hash"}
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    text = json.dumps(plain(values), sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _layers(data: dict, file: str, model: str | None, profile: str, variant: str | None) -> list[tuple[str, Any]]:
    """``(dotted location, mapping)`` per layer, lowest first (the merge rule of the module docstring)."""
    if not isinstance(data, dict):
        raise RecipeError(f"{file}: expected a mapping of sections, found {type(data).__name__}")
    if profile not in PROFILES:
        raise RecipeError(f"{file}: profile: expected one of {list(PROFILES)}, found {profile!r}")
    base = model if model is not None else "paper"
    if model is None:  # section-keyed: every top-level key is known, so a misspelt `dmeo:` cannot hide
        unknown = sorted(set(data) - NON_MODEL_KEYS - {"paper"})
        if unknown:
            raise RecipeError(f"{file}: {unknown[0]}: unknown section; sections are paper and "
                              f"{sorted(NON_MODEL_KEYS)}")
    if base not in data:
        models = sorted(set(data) - NON_MODEL_KEYS - {"paper"})
        raise RecipeError(f"{file}: {base}: no such section; "
                          + (f"model sections: {models}" if models else f"sections: {sorted(data)}"))
    layers = [(base, data[base])]
    if variant == "authors_code":
        if "authors_code" not in data:
            raise RecipeError(f"{file}: authors_code: variant 'authors_code' asked for, the file has no such section")
        layers.append(("authors_code", data["authors_code"]))
    if profile in data:
        section = data[profile]
        per_model = {}
        if isinstance(section, dict) and PER_MODEL in section:
            section = {k: v for k, v in section.items() if k != PER_MODEL}
            per_model = data[profile][PER_MODEL] or {}
            sections = sorted(set(data) - NON_MODEL_KEYS - {"paper"})
            if not isinstance(per_model, dict) or set(per_model) - set(sections):
                bad = per_model if not isinstance(per_model, dict) else sorted(set(per_model) - set(sections))[0]
                raise RecipeError(f"{file}: {profile}.{PER_MODEL}: expected a mapping of model sections "
                                  f"{sections}, found {bad!r}")
        layers.append((profile, section))
        if model in per_model:  # what this profile sets for one model only (the demo BLIP-large's size)
            layers.append((f"{profile}.{PER_MODEL}.{model}", per_model[model]))
    if variant not in (None, "paper", "authors_code"):
        variants = data.get("variants") or {}
        if variant not in variants:
            raise RecipeError(f"{file}: variants.{variant}: unknown variant; variants: "
                              f"{['authors_code'] * ('authors_code' in data) + sorted(variants)}")
        layers.append((f"variants.{variant}", variants[variant]))
    return layers


def _attach_hash(values: dict, schema: type, digest: str, train_as: str) -> dict:
    """Each TrainConfig-typed field of ``schema`` (at any depth) given ``recipe_hash``: built as a TrainConfig
    (``train_as="config"``) or kept as the mapping of the keys given plus ``recipe_hash`` (``"mapping"``, for
    callers that build the TrainConfig themselves with keyword arguments of their own)."""
    hints = typing.get_type_hints(schema)
    out = dict(values)
    for name, value in values.items():
        tp = hints[name]
        inner = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
        if inner[0] is TrainConfig and isinstance(value, dict):
            out[name] = (TrainConfig(**value, recipe_hash=digest) if train_as == "config"
                         else {**value, "recipe_hash": digest})
        elif dataclasses.is_dataclass(inner[0]) and isinstance(value, dict):
            out[name] = _attach_hash(value, inner[0], digest, train_as)
    return out


def _train_configs(values: dict, schema: type, file: str, key: str = "") -> dict:
    """Each TrainConfig-typed mapping built once before hashing so its own checks (choices, ranges) name the file."""
    hints = typing.get_type_hints(schema)
    out = dict(values)
    for name, value in values.items():
        inner = [a for a in typing.get_args(hints[name]) if a is not type(None)] or [hints[name]]
        where = f"{key}.{name}" if key else name
        if inner[0] is TrainConfig and isinstance(value, dict):
            try:
                out[name] = TrainConfig(**value)
            except ValueError as error:
                raise RecipeError(f"{file}: {where}: {error}") from None
        elif dataclasses.is_dataclass(inner[0]) and isinstance(value, dict):
            out[name] = _train_configs(value, inner[0], file, where)
    return out


def read_recipe(path: str | Path, schema: type, *, model: str | None = None, profile: str = "rocov2",
                variant: str | None = None, overrides: dict | None = None, defaults: dict | None = None,
                train_as: str = "config") -> dict:
    """The resolved recipe: a dict shaped like ``schema`` (a dataclass) with every ``train:`` mapping a
    :class:`TrainConfig` (``train_as="mapping"``: the keys given plus ``recipe_hash``) and ``"recipe_hash"``
    added at the top. The hash is the same either way (computed from the built TrainConfigs).

    ``model``: the model section of a model-keyed file (None: ``paper``); ``profile``: ``demo`` merges the
    ``demo:`` section; ``variant``: ``authors_code`` or a name under ``variants:``; ``overrides``: a mapping
    merged last (checked like a layer); ``defaults``: a mapping under the paper layer (BLIP's MODEL_DEFAULTS).
    """
    file = str(path)
    data = load_yaml(path)
    layers = _layers(data, file, model, profile, variant)
    if overrides:
        layers.append(("overrides", overrides))
    merged = copy.deepcopy(defaults or {})
    for i, (where, layer) in enumerate(layers):
        if layer is None:
            layer = {}
        # each layer alone: the error names the key where it is written; only paper must be complete
        source = file if where != "overrides" else f"{file} (overrides)"
        checked = coerce(layer, schema, source, where, complete=False)
        _train_configs(checked, schema, source, where)  # choices and ranges, named where they are written
        if i == 0:
            coerce(merge(defaults or {}, layer), schema, file, where, complete=True)
        merged = merge(merged, layer)
    values = coerce(merged, schema, file, "", complete=True)
    built = _train_configs(values, schema, file)
    digest = recipe_hash(built)
    values = _attach_hash(values, schema, digest, train_as)
    values["recipe_hash"] = digest
    return values


def read_section(path: str | Path, section: str | None, schema: type, overrides: dict | None = None) -> dict:
    """One section (dotted path) of a YAML file checked against ``schema``, with no layering and no required
    keys: :meth:`TrainConfig.from_yaml`'s reader."""
    file = str(path)
    data = load_yaml(path)
    for key in section.split(".") if section else []:
        if not isinstance(data, dict) or key not in data:
            raise RecipeError(f"{file}: {section}: no such section (missing {key!r})")
        data = data[key]
    values = coerce(data or {}, schema, file, section or "", complete=False)
    if overrides:
        values.update(coerce(overrides, schema, "overrides", "", complete=False))
    return values
