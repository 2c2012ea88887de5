"""IoT control: devices, their shadows and commands, hourly instructions, automation rules, schedules."""
