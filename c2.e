/dev/fd/3: line 46: hub-pgen: command not found
