"""The admin web console served by the operator (docs/console.md).

``views`` (pure: CR dicts in, page model and patches out), ``auth`` (TokenReview and
SubjectAccessReview with short caches, download tickets), ``tarstream`` (a version as a tar
stream), ``kubeio`` (the console's API calls), ``app`` (aiohttp routes), ``server`` (its own
thread and event loop beside Kopf's), ``static/`` (the page: HTML, vanilla JS, CSS).
"""
