"""audiocraft.modules"""
