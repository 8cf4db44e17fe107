"""The Jinja environments every renderer uses, one per output language.

StrictUndefined turns a missing variable into an error instead of an empty string, and
templates never read the clock or the environment, so output is byte-stable for equal input.

Every ``{{ value }}`` passes through its language's guard (Jinja ``finalize``), so a template
cannot forget to escape or quote (the load-time grammars in :mod:`hacloud.spec.grammar` are the
other, independent defence):

- ``*.xml.j2``: XML-escaped, newlines and tabs as character references, so an attribute reads
  back exactly as given; characters XML cannot hold are refused.
- ``*.ocf.j2``, ``*.sh.j2`` (shell): only the output of the ``sh`` filter (``shlex.quote``)
  or of ``heredoc_xml`` (inside quoted here-documents) or plain tokens of
  ``[A-Za-z0-9_./:@%+,=-]``.
- ``drbd/``, ``corosync/`` (directive languages): one token, no blank, quote, ``;``, braces,
  ``#`` or control character; anything else would start a new directive or section. DRBD
  paths go through ``drbd_string`` (a quoted DRBD string).
- everything else (line-based files: sysctl, ini, environment files): one line without
  quotes, ``$``, backquote, backslash, ``=``, ``|`` or ``#``.

A refused value raises :class:`UnsafeValue` (exit 2): it means a value slipped past the
load-time grammar, which is a bug to report, never something to write.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup, escape

from hacloud.datafiles import templates_dir
from hacloud.errors import HacloudError

# Trusted text written by hacloud itself (not from any input): guards let it through.
HEADER = Markup("Managed by hacloud. Changes made here are replaced by the next `hacloud up`.")


class UnsafeValue(HacloudError):
    """A value would add a directive, element or command to a rendered file (exit 2)."""

    exit_code = 2


# XML 1.0 cannot hold these at all, not even as character references; lone surrogates cannot
# be written as UTF-8 at all.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_SHELL_TOKEN = re.compile(r"[A-Za-z0-9_./:@%+,=-]*")
_DIRECTIVE_TOKEN = re.compile(r"[^\s\x00-\x1f\x7f\ud800-\udfff\"';{}#\\$`]*")
# '=', '|' and '#' too: a second `key = value` on the line, a pipe (kernel.core_pattern), a comment.
_LINE = re.compile(r"[^\x00-\x1f\x7f\ud800-\udfff\"'$`\\=|#]*")


def _refuse(dialect: str, value: str, why: str, *, code: str) -> UnsafeValue:
    """The error for a value that does not fit ``dialect``; ``code`` names the escaper that
    refused it."""
    return UnsafeValue(
        f"refusing to write {value!r} into {dialect}: it {why}",
        "the spec/inventory grammar should have refused this value; fix the value and report "
        "the case as a hacloud bug",
        code=code,
    )


def xml_text(value: object) -> Markup:
    """``value`` as XML attribute/element text that parses back to exactly ``value``. In a
    shell script (``heredoc_xml``) only inside a quoted here-document: it holds no newline, so
    it cannot end the document, but outside one ``&``, ``;`` and blanks mean something."""
    text = str(value)
    if _XML_ILLEGAL.search(text):
        raise _refuse("XML", text, "holds a character XML cannot represent", code="HAC225")
    escaped = str(escape(text))
    # Markup marks text as already escaped (S704 is about unescaped input; this is escaped).
    return Markup(escaped.replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;"))  # noqa: S704


def xml_comment(value: object) -> Markup:
    """``value`` inside an XML comment, which must not hold ``--`` (not well-formed XML)."""
    text = str(xml_text(value))
    while "--" in text:
        text = text.replace("--", "-&#45;-")
    return Markup(text)  # noqa: S704 (escaped by xml_text above)


def drbd_string(value: object) -> Markup:
    """``value`` as one quoted DRBD string (drbdadm's scanner: backslash escapes, one line);
    a bare word ends at ``:``, ``,``, ``@`` or ``+``, which by-path device names contain."""
    text = str(value)
    if _CONTROL.search(text):
        raise _refuse("a DRBD file", text, "holds a control character", code="HAC226")
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    return Markup(f'"{quoted}"')  # noqa: S704 (a quoted DRBD string, not HTML)


def comment(value: object) -> Markup:
    """``value`` as the text of a one-line comment (``# ...`` to the end of the line): any
    character but a line break or another control character, which would end the comment."""
    text = str(value)
    if _CONTROL.search(text):
        raise _refuse("a comment", text, "holds a line break or a control character", code="HAC227")
    return Markup(text)  # noqa: S704 (one comment line, not HTML)


def sh_quote(value: object) -> Markup:
    """``value`` as one shell word (``shlex.quote``): never expanded, split or run."""
    text = str(value)
    if re.search("[\x00\ud800-\udfff]", text):
        # a quoted newline is still one word; a NUL byte is dropped by sh, a lone surrogate
        # cannot be written at all
        raise _refuse("a shell script", text, "holds a NUL byte or a lone surrogate", code="HAC228")
    return Markup(shlex.quote(text))  # noqa: S704 (marks a quoted shell word, not HTML)


def _finalizer(dialect: str) -> Callable[[Any], Any]:
    if dialect == "xml":
        return lambda v: v if isinstance(v, Markup) else xml_text(v)
    if dialect == "shell":
        return _guard(
            "a shell script", _SHELL_TOKEN, "is not a plain token: pass it through `| sh`", "HAC229"
        )
    if dialect in ("drbd", "corosync"):
        return _guard(f"a {dialect} file", _DIRECTIVE_TOKEN, "would start another directive", "HAC230")
    return _guard("a line-based file", _LINE, "would add a line or be expanded", "HAC231")


def _guard(dialect: str, allowed: re.Pattern[str], why: str, code: str) -> Callable[[Any], Any]:
    def finalize(value: Any) -> Any:
        if isinstance(value, Markup | int | float):
            return value
        if not allowed.fullmatch(str(value)):
            raise _refuse(dialect, str(value), why, code=code)
        return value

    return finalize


def _dialect(template: str) -> str:
    if template.endswith(".xml.j2"):
        return "xml"
    if template.endswith((".ocf.j2", ".sh.j2")):
        return "shell"
    if template.startswith("drbd/"):
        return "drbd"
    if template.startswith("corosync/"):
        return "corosync"
    return "line"


@cache
def environment(dialect: str = "line") -> jinja2.Environment:
    """The environment for one output language (see the module docstring)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        # XML templates escape everything (the finalizer does the rest); others are not HTML.
        autoescape=dialect == "xml",  # noqa: S701 (the finalizers guard the other languages)
        finalize=_finalizer(dialect),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["HEADER"] = HEADER
    # Filters whose output the guards trust exist only where that output is safe: a quoted
    # shell word means nothing to drbdadm, for instance.
    if dialect == "shell":
        env.filters["sh"] = sh_quote
    if dialect == "drbd":
        env.filters["drbd_string"] = drbd_string
    if dialect == "shell":
        env.filters["heredoc_xml"] = xml_text
    if dialect == "xml":
        env.filters["xml_comment"] = xml_comment
    else:
        env.filters["comment"] = comment
    return env


def render_template(template: str, /, **context: Any) -> str:
    try:
        return environment(_dialect(template)).get_template(template).render(**context)
    except UnsafeValue as exc:
        raise UnsafeValue(f"{template}: {exc.message}", exc.remedy, code=exc.code) from None
