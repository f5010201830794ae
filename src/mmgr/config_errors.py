"""Readable configuration errors: pydantic's validation errors turned into one line per setting that names the
dotted key and says what is wrong: an unknown key (with the valid keys of its section), a value out of range (with
the valid range and the setting's description), or a wrong type (with the expected type)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args, get_origin

import annotated_types
from pydantic import BaseModel


def explain_errors(errors: list[dict[str, Any]], root: type[BaseModel]) -> str:
    """One line per setting for pydantic `errors` raised while validating `root`."""
    return "\n".join(_explain(err, root) for err in _meant_union_member(errors, root))


WRONG_KIND = ("int_type", "int_parsing", "int_from_float", "list_type", "float_type", "float_parsing")


def _meant_union_member(errors: list[dict[str, Any]], root: type[BaseModel]) -> list[dict[str, Any]]:
    """A setting of several types (a size, or one size per level) reports only the type the value was meant as
    (a number's range error, not also "should be a list"), without pydantic's member tag in its key."""
    by_setting: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    out: list[dict[str, Any]] = []
    for err in errors:
        loc = tuple(err["loc"])
        field, inner = _field_at(loc, root)
        is_union = field is not None and len(get_args(field.annotation)) > 1 and \
            get_origin(field.annotation) not in (list, dict, Literal)
        if not (is_union and inner and isinstance(inner[0], str)):
            out.append(err)
            continue
        setting = loc[:len(loc) - len(inner)]
        by_setting.setdefault(setting, []).append({**err, "loc": (*setting, *inner[1:])})
    for setting, member_errors in by_setting.items():
        meant = [e for e in member_errors if not (e["type"] in WRONG_KIND and tuple(e["loc"]) == setting)]
        out += meant or member_errors[:1]
    return out


def _section_at(path: tuple[Any, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    model = root
    for part in path:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _field_at(loc: tuple[Any, ...], root: type[BaseModel]) -> tuple[Any, tuple[Any, ...]]:
    """(the setting's FieldInfo or None, the rest of `loc` inside it, e.g. a list index)."""
    model = root
    for depth, part in enumerate(loc):
        field = model.model_fields.get(str(part))
        if field is None:
            return None, ()
        annotation = field.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return field, loc[depth + 1:]
        model = annotation
    return None, ()


RANGE_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short", "finite_number")


def _explain(err: dict[str, Any], root: type[BaseModel]) -> str:
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        section = _section_at(loc[:-1], root)
        valid = sorted(section.model_fields) if section else []
        return f"  unknown key '{key}'; valid keys here: {', '.join(valid)}"
    if err["type"] == "value_error":   # a check across settings of one section (model validator)
        return f"  '{key or 'config'}': {err['msg'].removeprefix('Value error, ')}"
    field, inner = _field_at(loc, root)
    if err["type"] in RANGE_ERRORS:
        valid = valid_range(field, err.get("ctx", {}), element=bool(inner))
        what = f" ({field.description})" if field is not None and field.description else ""
        return f"  '{key}': {err.get('input')!r} is out of range; valid range: {valid}{what}"
    annotation = field.annotation if field is not None else None
    if inner and get_args(annotation):   # an item of a list setting, or a key / value of a dict setting
        annotation = get_args(annotation)[0 if inner[-1] == "[key]" else -1]
    expected = _type_name(annotation) if annotation is not None else "?"
    return f"  '{key}': {err['msg']} (expected {expected}, got {err.get('input')!r})"


def valid_range(field: Any, ctx: dict[str, Any], element: bool = False) -> str:
    """The bounds of a setting as text ("1 to 8", ">= 1", "> 0 and < 1", "at least 1 item"); `element`: the bounds
    of a list setting's items."""
    metadata = list(getattr(field, "metadata", []) or [])
    if (element or not metadata) and field is not None:       # a list's items, or the members of a union
        metadata = [m for arg in get_args(field.annotation) for m in getattr(arg, "__metadata__", ())]
        metadata = [m for info in metadata for m in getattr(info, "metadata", [info])]
    bounds = {name: getattr(m, name) for m in metadata for name in ("ge", "gt", "le", "lt", "min_length")
              if isinstance(m, annotated_types.BaseMetadata) and getattr(m, name, None) is not None}
    bounds = bounds or {name: ctx[name] for name in ("ge", "gt", "le", "lt") if name in ctx}
    if "min_length" in bounds:
        return f"a list of at least {bounds['min_length']} item(s)"
    low = f">= {bounds['ge']}" if "ge" in bounds else f"> {bounds['gt']}" if "gt" in bounds else None
    high = f"<= {bounds['le']}" if "le" in bounds else f"< {bounds['lt']}" if "lt" in bounds else None
    if "ge" in bounds and "le" in bounds:
        return f"{bounds['ge']} to {bounds['le']}"
    if low and high:
        return f"{low} and {high}"
    return low or high or "a finite number"


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) is Annotated:
        return _type_name(get_args(annotation)[0])
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(annotation))
    if get_origin(annotation) is list:
        return f"a list of {_type_name(get_args(annotation)[0])}"
    if get_args(annotation):
        return " or ".join(_type_name(a) for a in get_args(annotation)).replace("NoneType", "null")
    return getattr(annotation, "__name__", None) or str(annotation)
