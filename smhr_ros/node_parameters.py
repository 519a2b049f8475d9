"""Declare a node's ROS parameters from a table of typed, described specs, and check them.

Used by camera_node and recorder_node (hands_node builds its descriptors with the same
`build_descriptor`): every parameter gets a description, its type, its range
or allowed values, and is read-only (these nodes read their settings once, at start). Values
that break a spec, and overrides that name no declared parameter, raise `ConfigError` naming the
parameter and what is allowed, so `main()` can print one line and exit non-zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node

from smhr_core.config import ConfigError

_ROS_OWN_PARAMETERS = ("use_sim_time", "start_type_description_service")


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter: name, default (its type is the parameter's type) and description."""

    name: str
    default: bool | int | float | str
    description: str
    range: tuple[float, float] | None = None
    """Inclusive [low, high] for int and float parameters."""
    choices: tuple[str, ...] | None = None
    """Allowed values of a string parameter."""

    def allowed(self) -> str:
        """What values are allowed, in words."""
        kind = type(self.default).__name__
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.range is not None:
            return f"{kind} in [{self.range[0]}, {self.range[1]}]"
        return kind

    def descriptor(self) -> ParameterDescriptor:
        """The ROS descriptor: description, range or choices, read-only."""
        return build_descriptor(
            self.name,
            self.description,
            read_only=True,
            integer=isinstance(self.default, int),
            value_range=self.range,
            choices=self.choices,
        )


def build_descriptor(
    name: str,
    description: str,
    *,
    read_only: bool,
    integer: bool,
    value_range: tuple[float, float] | None,
    choices: tuple[str, ...] | None,
    parameter_type: int = ParameterType.PARAMETER_NOT_SET,
) -> ParameterDescriptor:
    """A `ParameterDescriptor` with an inclusive integer or floating-point range (`integer`
    picks which) or a list of allowed strings, so `ros2 param describe` shows what is allowed."""
    descriptor = ParameterDescriptor(
        name=name, type=parameter_type, description=description, read_only=read_only
    )
    if choices is not None:
        descriptor.additional_constraints = "one of: " + ", ".join(choices)
    if value_range is not None:
        low, high = value_range
        if integer:
            descriptor.integer_range = [
                IntegerRange(from_value=int(low), to_value=int(high), step=0)
            ]
        else:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)
            ]
    return descriptor


def _check(spec: ParameterSpec, value: Any) -> None:
    if isinstance(spec.default, float) and not math.isfinite(value):
        raise ConfigError(f"parameter '{spec.name}': {value!r} is not finite")
    if spec.range is not None and not spec.range[0] <= value <= spec.range[1]:
        raise ConfigError(f"parameter '{spec.name}': {value!r} is not {spec.allowed()}")
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"parameter '{spec.name}': {value!r} is not {spec.allowed()}")


def declare_parameters(node: Node, specs: Sequence[ParameterSpec]) -> dict[str, Any]:
    """Declare every spec on `node`; return name -> value. Raises `ConfigError`."""
    known = {spec.name for spec in specs}
    unknown = sorted(
        name
        for name in node._parameter_overrides  # the values given on the command line / file
        if name not in known
        and name not in _ROS_OWN_PARAMETERS
        and not name.startswith("qos_overrides.")
    )
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {unknown} for {node.get_name()}; its parameters are "
            f"{sorted(known)}"
        )
    values = {}
    for spec in specs:
        try:
            value = node.declare_parameter(spec.name, spec.default, spec.descriptor()).value
        except InvalidParameterTypeException:
            given = node._parameter_overrides[spec.name].value
            hint = " (write e.g. 10.0, not 10)" if isinstance(spec.default, float) else ""
            raise ConfigError(
                f"parameter '{spec.name}': {given!r} has the wrong type; expected "
                f"{spec.allowed()}{hint}"
            ) from None
        except InvalidParameterValueException:
            given = node._parameter_overrides[spec.name].value
            raise ConfigError(
                f"parameter '{spec.name}': {given!r} is not {spec.allowed()}"
            ) from None
        _check(spec, value)
        values[spec.name] = value
    return values
