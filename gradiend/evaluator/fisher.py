"""Alias of ``gradiend.lm.fisher`` (temporary: removed once every importer moved).

The alias is the same module object, so a test that patches ``fisher_of`` through either name
patches what both names' callers use.
"""

import sys

from gradiend.lm import fisher as _fisher

sys.modules[__name__] = _fisher
