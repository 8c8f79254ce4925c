// The shell's terminal: /dev/pts/0, open on fds 0, 1 and 2 as a login shell inherits it,
// so the files the shell opens get the numbers they would on a real machine (the container
// is fd 3). What is written to it goes nowhere (the shell prints its output itself); a read
// is end of file.

using Vfio.Platform.Fs;

namespace Vfio.Sim.Shell;

public sealed partial class SimShell
{
    private const string TtyPath = "/dev/pts/0";

    // Opens /dev/pts/0 (registering the pts driver on the machine's first shell) and installs
    // it at fds 0–2 without a syscall: the shell inherited them, it did not open them.
    private void InstallTty()
    {
        if (!Sim.Machine.Vfs.Exists(TtyPath))
        {
            int major = Sim.Machine.CharDevices.AllocRegion("pts", 1, TtyFops.Instance);
            if (major < 0)
            {
                return;
            }

            Sim.Machine.Vfs.CreateDevNode("pts/0", Vfio.Platform.Fs.CharDevices.MakeDev(major, 0), 0x190 /* 0620 */);
        }

        if (Process.Files.Open.Count != 0 || Sim.Machine.Vfs.Open(Process.Credentials, TtyPath, OpenFlags.O_RDWR, out SimFile? tty) < 0 || tty is null)
        {
            return;
        }

        for (int fd = 0; fd < 3; fd++)
        {
            if (fd > 0)
            {
                tty.Get();
            }

            Process.Files.Install(tty, cloexec: false, Process.Limits.NoFile);
        }
    }

    /// <summary>A terminal that swallows what is written and reads as end of file.</summary>
    private sealed class TtyFops : FileOperations
    {
        public static readonly TtyFops Instance = new();

        public override bool CanRead => true;

        public override bool CanWrite => true;

        public override long Read(SimFile file, ulong buf, long count, ref long pos) => 0;

        public override long Write(SimFile file, ulong buf, long count, ref long pos) => count;
    }
}
