"""``main.py masks``: learned masks applied to a workspace, and masks in and out for compositing tools."""
