"""`{% load health %}`: figures shown the one way `builds/health.py` writes them."""

from __future__ import annotations

from django import template

from builds.health import format_rate, format_seconds

register = template.Library()
register.filter("seconds", format_seconds)
register.filter("rate", format_rate)
