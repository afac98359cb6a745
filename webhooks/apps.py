from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"

    def ready(self) -> None:
        from audit.signals import log_appended
        from webhooks.services import webhooks_wake

        # Every write that appends to the log wakes the followers once it commits.
        log_appended.connect(webhooks_wake, dispatch_uid="webhooks_wake")
