"""Cloud Functions load main.py: it exposes every function target of this source bundle.

Each target lives in its own module; importing them is cheap (SDKs load on first use).
"""

from api import api
from deploy import deploy
from reconcile import reconcile
from validate import validate

__all__ = ["api", "deploy", "reconcile", "validate"]
