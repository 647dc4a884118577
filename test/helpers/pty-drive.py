# Run a command on a pseudo-terminal (stdin, stdout and stderr), print all it wrote; with
# INTERRUPT_AFTER=S, type Ctrl-C after S seconds; with INTERRUPT_ON=TEXT, once TEXT was written. The exit code goes to stderr as "EXIT n".
import os, pty, sys, time, select, signal
argv = sys.argv[1:]
interrupt_after = float(os.environ.get('INTERRUPT_AFTER', '0'))
interrupt_on = os.environ.get('INTERRUPT_ON', '').encode()
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
out = b''
t0 = time.time()
sent = False
while True:
    if not sent and ((interrupt_after and time.time() - t0 > interrupt_after) or (interrupt_on and interrupt_on in out)):
        os.write(fd, b'\x03'); sent = True
    r, _, _ = select.select([fd], [], [], 0.1)
    if r:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data: break
        out += data
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.stderr.write('EXIT %d\n' % (os.waitstatus_to_exitcode(status)))
