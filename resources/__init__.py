"""Data the product ships: icons, stylesheets, configurations."""
