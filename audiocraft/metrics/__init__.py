"""audiocraft.metrics"""
