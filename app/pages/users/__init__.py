"""The Users page: what a trained model recommends to each user, and why. UsersPage lives in page.py."""

from app.pages.users.page import UsersPage

__all__ = ["UsersPage"]
