"""Stage 1 writes the times of a body the mirror accepted in the contract's JSON form by
slicing where it can (``processors.entities.canonical_time``), and stage 2 reads them back
in UTC the same way (``processors.assembly.utc_text``): for every string of the mirror's
pattern that parses, the result is what parsing and formatting give."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import example, given
from hypothesis import strategies as st

from processors.assembly import utc_text
from processors.entities import canonical_time, json_time

_OFFSETS = st.one_of(
    st.just("Z"),
    st.just("+00:00"),
    st.just("-00:00"),
    st.builds(
        "{}{:02d}:{:02d}".format,
        st.sampled_from("+-"),
        st.integers(0, 23),
        st.integers(0, 59),
    ),
)
_FRACTIONS = st.one_of(
    st.just(""),
    st.just(".000000"),
    st.builds(lambda digits: "." + digits, st.text("0123456789", min_size=1, max_size=6)),
)


@given(
    moment=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    fraction=_FRACTIONS,
    offset=_OFFSETS,
)
@example(moment=datetime(2026, 3, 1, 10), fraction=".123456", offset="+00:00")
@example(moment=datetime(2026, 3, 1, 10), fraction=".123456", offset="Z")
@example(moment=datetime(2026, 3, 1, 10), fraction=".000000", offset="Z")
def test_canonical_time_equals_parsing_and_formatting(
    moment: datetime, fraction: str, offset: str
) -> None:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + fraction + offset
    canonical = canonical_time(text)
    assert canonical == json_time(datetime.fromisoformat(text))
    try:
        expected = datetime.fromisoformat(canonical).astimezone(UTC).isoformat()
    except OverflowError:  # in UTC before year 1 or after 9999: parsing fails alike
        return
    assert utc_text(canonical) == expected
