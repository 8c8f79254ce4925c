// What the vfio-pci interrupt race scenarios share (races 8, 9 and 10 in docs/races.md): edu
// on the default machine bound to vfio-pci at boot (with the module options the scenario
// asks for), and the user-side moves they hammer — eventfds, edu's raise and acknowledge
// registers, the virtual COMMAND register — through the user's own fds.

using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Devices;
using Vfio.Platform.Fs;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using Vfio.Sim.Scenarios.Lifecycle;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Pci;

/// <summary>An interrupt race on edu bound to vfio-pci at boot.</summary>
internal abstract class PciIrqScenario : LifecycleScenario
{
    /// <summary>vfio-pci's module options for this scenario.</summary>
    protected virtual VfioPciOptions? PciOptions => null;

    /// <inheritdoc/>
    public override void Configure(VfioSimBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.AddVfioPci(PciOptions).AddModule(sim =>
        {
            if (Unmet(sim) is null)
            {
                sim.Bind(Edu, VfioPciDriver.DriverName);
            }
        });
    }

    /// <summary>
    /// The fix switch of the races linux-6.12 fixed and linux-6.1 still has (9 and 10): on runs
    /// the linux-6.12 profile, off the linux-6.1 one.
    /// </summary>
    protected static void UseFixedProfile(VfioSimBuilder builder, bool on)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.UseProfile(on ? KernelProfile.Linux6_12 : KernelProfile.Linux6_1);
    }

    /// <summary>A non-blocking eventfd of <paramref name="user"/>.</summary>
    protected static int NewEventfd(SimProcess user)
    {
        int fd = user.Eventfd(0, EventFdContext.EFD_NONBLOCK);
        Check(fd >= 0, "eventfd() succeeds", $"{fd}");
        return fd;
    }

    /// <summary>What a non-blocking read of the eventfd returns: its count, 0 when empty.</summary>
    protected static ulong Drain(SimProcess user, int efd)
    {
        byte[] b = new byte[8];
        return user.Read(efd, b) == 8 ? BitConverter.ToUInt64(b) : 0;
    }

    /// <summary>Writes 1 to the eventfd (what KVM's resampler does to the unmask eventfd).</summary>
    protected static void Poke(SimProcess user, int efd) => user.Write(efd, BitConverter.GetBytes(1UL));

    /// <summary>edu raises interrupt status bit 0 (register 0x60).</summary>
    protected static void EduRaise(SimProcess user, int device) => WriteBar0(user, device, EduDevice.RegIrqRaise, 1);

    /// <summary>edu's interrupt status is acknowledged (register 0x64), which drops INTx.</summary>
    protected static void EduAck(SimProcess user, int device) => WriteBar0(user, device, EduDevice.RegIrqAck, 0xffffffff);

    /// <summary>The user's COMMAND register through the config region.</summary>
    protected static ushort ReadCommand(SimProcess user, int device)
    {
        byte[] b = new byte[2];
        user.Pread(device, b, VfioPciIndex.IndexToOffset(VfioPciIndex.Config) + PciRegs.Command);
        return BitConverter.ToUInt16(b);
    }

    /// <summary>Writes the user's COMMAND register.</summary>
    protected static void WriteCommand(SimProcess user, int device, ushort value)
        => user.Pwrite(device, BitConverter.GetBytes(value), VfioPciIndex.IndexToOffset(VfioPciIndex.Config) + PciRegs.Command);

    private static void WriteBar0(SimProcess user, int device, int reg, uint value)
        => user.Pwrite(device, BitConverter.GetBytes(value), VfioPciIndex.IndexToOffset(0) + reg);
}
