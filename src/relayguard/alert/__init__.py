"""Telling people: e-mail and webhook alerts (deduplicated, rate-limited) and Prometheus metrics.

`Alert` is what `watch` has to say; `Dispatcher` sends it through the configured channels
(`[alert]` in the configuration) from a worker thread, so a slow mail server never delays a
ban; `Deduper` turns "the detectors still see it" into "one incident, one alert"; `Metrics`
serves `/metrics`.
"""

from .channels import Channel, EmailChannel, WebhookChannel, slack_payload
from .dispatch import Deduper, Dispatcher, from_config
from .metrics import Metrics
from .model import Alert

__all__ = ["Alert", "Channel", "Deduper", "Dispatcher", "EmailChannel", "Metrics",
           "WebhookChannel", "from_config", "slack_payload"]
