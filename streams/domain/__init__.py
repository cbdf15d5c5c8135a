"""The shapes that cross stages, typed so mypy sees them on the main paths.

They are TypedDicts, not classes: each is the JSON object that travels on a
topic or sits in the table (orjson in, orjson out, no copy on the hot path),
and the type says which keys it has.

- :class:`Event`: a normalized event (streams/events.py), in a bundle on
  kairos.internal.events;
- :class:`Moment`: a detected moment on kairos.internal.moments;
- :class:`Offer`: the record on kairos.offers;
- :class:`Profile`: a person's state in the profiles table (agents/profile.py
  has its layout and its bounds).
"""

from streams.domain.event import Event
from streams.domain.moment import Moment
from streams.domain.offer import Coupon, Offer, Timings
from streams.domain.profile import Profile

__all__ = ["Coupon", "Event", "Moment", "Offer", "Profile", "Timings"]
