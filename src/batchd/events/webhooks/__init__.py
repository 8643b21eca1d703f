"""Webhooks shared by every dialect: signing, the retry schedule, payloads and delivery.

An outcome that has a webhook (a run's ``callback_webhook``, a native batch's
``webhook_url``) writes an outbox message in the transaction that records it; the
worker's :class:`~batchd.events.webhooks.delivery.WebhookDeliverer` sends it, signed
per the Standard Webhooks specification, and retries it on the
:class:`~batchd.events.webhooks.schedule.RetrySchedule`.
"""

from batchd.events.webhooks.signing import new_secret, sign, verify

__all__ = ["new_secret", "sign", "verify"]
