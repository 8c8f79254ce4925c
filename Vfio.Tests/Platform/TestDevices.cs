// Small drivers for platform tests: a misc device that counts opens and releases and can
// map a range of MMIO frames (PFNMAP, faulted in on first touch).

using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;

namespace Vfio.Tests.Platform;

internal sealed class CountingMisc : FileOperations, IVmOperations, IMmioHandler
{
    private int _opens;
    private int _releases;
    private int _faults;

    public CountingMisc(SimMachine machine, int minor = 200, string node = "testdev")
    {
        Machine = machine;
        MmioBase = PhysMem.PciHoleStart + ((long)minor << 20);
        machine.Memory.RegisterMmio(MmioBase, MmioSize, this);
        int ret = machine.CharDevices.RegisterMisc(minor, node, this);
        if (ret != 0)
        {
            throw new InvalidOperationException($"misc_register failed: {ret}");
        }

        NodePath = "/dev/" + node;
    }

    public const long MmioSize = 1 << 16;

    public SimMachine Machine { get; }

    public string NodePath { get; }

    public long MmioBase { get; }

    public int Opens => Volatile.Read(ref _opens);

    public int Releases => Volatile.Read(ref _releases);

    public int Faults => Volatile.Read(ref _faults);

    public byte[] Registers { get; } = new byte[MmioSize];

    public override bool CanRead => true;

    public override bool CanWrite => true;

    public override bool CanMmap => true;

    public override int Open(VfsNode? node, SimFile file)
    {
        Interlocked.Increment(ref _opens);
        return 0;
    }

    /// <summary>Called from Release, after the count is raised.</summary>
    public Action<SimFile>? OnRelease { get; set; }

    public override void Release(SimFile file)
    {
        Interlocked.Increment(ref _releases);
        OnRelease?.Invoke(file);
    }

    public override long Ioctl(SimFile file, uint cmd, ulong arg) => cmd == 0x1234 ? 42 : Errno.ENOIOCTLCMD.Negative();

    public override int Mmap(SimFile file, Vma vma)
    {
        if ((vma.Flags & VmFlags.VM_SHARED) == 0)
        {
            return Errno.EINVAL.Negative();
        }

        vma.Flags |= VmFlags.VM_IO | VmFlags.VM_PFNMAP | VmFlags.VM_DONTEXPAND;
        vma.Ops = this;
        return 0;
    }

    public VmFault Fault(Vma vma, ulong address, bool write)
    {
        Interlocked.Increment(ref _faults);
        long off = (long)((address - vma.Start) >> PhysMem.PageShift) + (long)vma.PgOff;
        if ((off << PhysMem.PageShift) >= MmioSize)
        {
            return VmFault.SigBus;
        }

        vma.InsertPfn(address, (MmioBase >> PhysMem.PageShift) + off);
        return VmFault.NoPage;
    }

    public void Read(long offset, Span<byte> data) => Registers.AsSpan((int)offset, data.Length).CopyTo(data);

    public void Write(long offset, ReadOnlySpan<byte> data) => data.CopyTo(Registers.AsSpan((int)offset));
}
