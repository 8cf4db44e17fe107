"""The Jinja environment every renderer uses.

StrictUndefined turns a missing variable into an error instead of an empty string, and
templates never read the clock or the environment, so output is byte-stable for equal input.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2

from hacloud.resources import templates_dir

HEADER = "Managed by hacloud. Changes made here are replaced by the next `hacloud up`."


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("xml",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["HEADER"] = HEADER
    return env


def render_template(template: str, /, **context: Any) -> str:
    return environment().get_template(template).render(**context)
