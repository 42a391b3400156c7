"""The Samba driver: smb.conf built from data, testparm, smbd supervision and reload, SMB accounts."""
