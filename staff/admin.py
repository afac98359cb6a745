from django.contrib import admin
from django_otp.plugins.otp_totp.models import TOTPDevice

# django-otp's device admin would show (and let any staff user with the permission change)
# TOTP keys in a page that is not audited; staff_totp_enroll and staff_totp_reset, which
# are, manage devices instead.
if admin.site.is_registered(TOTPDevice):
    admin.site.unregister(TOTPDevice)
