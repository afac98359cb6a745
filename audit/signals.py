"""Signals of the log, for apps that follow it without the log knowing them."""

from django.dispatch import Signal

# Sent by log_append inside the appending transaction, with `size` (the log's size once the
# transaction commits). A receiver that acts on the new events must wait for the commit
# (transaction.on_commit): a rolled-back append never happened.
log_appended = Signal()
