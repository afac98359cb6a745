from django.urls import path

from audit.web import views

urlpatterns = [
    path("", views.OverviewPage.as_view(), name="auditor-overview"),
    path(
        "overview.<str:export_format>",
        views.OverviewExportPage.as_view(),
        name="auditor-overview-export",
    ),
    path("events", views.EventsPage.as_view(), name="auditor-events"),
    path("events/<int:event_id>", views.EventPage.as_view(), name="auditor-event"),
    path("events/export.<str:export_format>", views.ExportPage.as_view(), name="auditor-export"),
    path("partners", views.PartnersPage.as_view(), name="auditor-partners"),
    path("partners/<slug:name>", views.PartnerPage.as_view(), name="auditor-partner"),
    path("log", views.LogHealthPage.as_view(), name="auditor-log"),
    path("sign-in", views.SignInPage.as_view(), name="auditor-sign-in"),
    path("sign-out", views.SignOutPage.as_view(), name="auditor-sign-out"),
]
