from django.apps import AppConfig


class HashesConfig(AppConfig):
    name = "hashes"
