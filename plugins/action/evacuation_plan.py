# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""xapi.sxm.evacuation_plan: its pool passwords travel over the secret channel, never in a file."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.xapi.sxm.plugins.plugin_utils.secret_channel_action import SecretChannelAction


class ActionModule(SecretChannelAction):
    pass
