"""Firewall helpers: log the SMTP connections that bypass the mail server (nftables)."""

from .nft import FirewallError, LogSmtpRule, Nft, Status, disable, enable, status

__all__ = ["FirewallError", "LogSmtpRule", "Nft", "Status", "disable", "enable", "status"]
