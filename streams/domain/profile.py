"""A person's state in the profiles table; its layout and bounds are agents/profile.py's."""

from __future__ import annotations

from typing import Any

# A JSON object whose keys the fold reads by name and by loop (upgrades and
# merges go through every field), so it stays a plain dict to mypy; the
# layout is documented, and bounded, in one place.
Profile = dict[str, Any]
