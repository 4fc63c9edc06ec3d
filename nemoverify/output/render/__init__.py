"""Renderers: each reads a frozen report and returns text; none reads a tensor."""
