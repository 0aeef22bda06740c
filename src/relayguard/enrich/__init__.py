"""Optional enrichment of what the logs say (client IPs → country and network)."""

from .geo import Geo, GeoDB, GeoError, GeoSpread

__all__ = ["Geo", "GeoDB", "GeoError", "GeoSpread"]
