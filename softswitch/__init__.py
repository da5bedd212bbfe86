"""Asynchronous SIP softswitch with an ACD."""
