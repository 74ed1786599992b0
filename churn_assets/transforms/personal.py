"""What personal data looks like, for masking and rejecting it wherever it turns up.

Silver keeps personal data by allow-list (contract columns, hashed, plus declared attributes),
but values do not always stay in their columns: a shifted export puts an e-mail address into
``segment``. So values are judged by their shape, whichever column they sit in: a categorical
value that looks like an e-mail address or phone number is rejected (its reason withholds it),
and every preview, reason and metadata value shown to a person masks such text.

The patterns are plain regular expressions that Polars (Rust) and Spark (Java) read alike.
"""

from __future__ import annotations

import re
from typing import Any

import narwhals as nw

# Explicit ASCII classes ([0-9], [ \t]), not \d, \s or \b: Rust and Java read those differently.
# An e-mail address anywhere in the text.
EMAIL = r"[^@ \t\r\n<>(),;:\"']+@[^@ \t\r\n<>(),;:\"']+\.[A-Za-z]{2,}"
# A whole value written like a phone number: an international or trunk prefix, or grouped
# digits, with at least seven digits; ISO dates and plain decimal numbers do not match.
PHONE = (
    r"^(\+|00)[0-9][0-9 ()./-]{5,}[0-9]$"
    r"|^0[0-9]{2,4}[ ()./-]?[0-9][0-9 ()./-]{3,}[0-9]$"
    r"|^\(?[0-9]{3}\)?[ .-][0-9]{3}[ .-][0-9]{4}$"
)
# A street address: a house number then a street word, or a street word then a number.
ADDRESS = (
    r"[0-9]+[A-Za-z]?,? [A-Za-z .'-]*(street|st|road|rd|avenue|ave|lane|ln|drive|dr|boulevard"
    r"|blvd|way|court|ct|place|pl|square|sq|terrace|close|crescent)([^A-Za-z]|$)"
    r"|(^|[^A-Za-z])([A-Za-z]*(strasse|straße|gasse)|rue|calle|avenida)[^0-9]{0,40}[0-9]+"
)
CONTACT = f"{EMAIL}|{PHONE}"
ANY_PERSONAL = f"(?i){EMAIL}|{PHONE}|{ADDRESS}"
# Column names that announce personal data (case-insensitive).
PERSONAL_NAME = (
    r"(e-?mail|phone|mobile|cell|fax|telephone|^tel$|address|street|postcode|postal|zip"
    r"|(^|_)name$|^name|birth|passport|ssn|iban|card)"
)
WITHHELD = "(withheld: personal data)"

_EMAIL = re.compile(EMAIL)
_PHONE_OR_ADDRESS = re.compile(f"{PHONE}|{ADDRESS}", re.IGNORECASE)
_NAME = re.compile(PERSONAL_NAME, re.IGNORECASE)


def looks_like_contact(value: nw.Expr) -> nw.Expr:
    """Text that looks like an e-mail address or a phone number (not for free text)."""
    return value.str.contains(CONTACT)


def shown(value: nw.Expr) -> nw.Expr:
    """A value as a message may quote it: withheld when it looks like personal data."""
    return nw.when(value.str.contains(ANY_PERSONAL)).then(nw.lit(WITHHELD)).otherwise(value)


def personal_column(name: str) -> bool:
    return bool(_NAME.search(name))


def mask_text(text: str) -> str:
    """``text`` with every e-mail address withheld, or all of it when it holds a phone-like or
    address-like value."""
    if _PHONE_OR_ADDRESS.search(text.strip()):
        return WITHHELD
    return _EMAIL.sub(WITHHELD, text) if "@" in text else text


def mask(value: Any) -> Any:
    """Strings anywhere in a metadata value (lists, dicts, tuples) masked; others unchanged."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {mask(k): mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(mask(v) for v in value)
    return value
