"""(placeholder: tables land with this concern)"""
