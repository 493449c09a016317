"""Tasuki's stateless HTTP functions, each a functions-framework target of the same name.

ingress (git hosts -> tasuki.events), router (events -> run.requested), dispatcher (runs -> jobs),
reporter (run and job statuses -> commit statuses on the git host).
"""
