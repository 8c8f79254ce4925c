// Tests VFIO_DEVICE_GET_INFO of Vfio.Pci/VfioPciCoreDevice.Ioctl.cs on both profiles: how
// many bytes of struct vfio_device_info are copied back (v6.6's rule, min(argsz, 24) of a
// zeroed struct, against 6.1's 20-or-16), checked with sentinel bytes past them. The sizes
// are the ones the real 6.1 and 6.12.118 kernels copied back for argsz 16..28.

using NUnit.Framework;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Sim;

namespace Vfio.Tests.Pci;

[TestFixture]
public sealed class VfioPciDeviceInfoTests
{
    private const byte Sentinel = 0xAA;

    [Test]
    public void DF_07_GetInfo_CopiesBackWhatTheProfileCopies_AndNotOneBytePast(
        [Values("linux-6.12", "linux-6.1")] string profile,
        [Values(16u, 18u, 20u, 22u, 24u, 40u)] uint argsz)
    {
        KernelProfile kernel = KernelProfile.Parse(profile);
        bool upToArgsz = kernel.Has(VfioCoreFeatures.InfoCopiesBackUpToArgsz);
        Assert.That(upToArgsz, Is.EqualTo(kernel == KernelProfile.Linux6_12));

        // v6.6+: min(argsz, sizeof = 24) bytes of a zeroed struct; 6.1: 20 from argsz 20 on, else 16.
        int copied = upToArgsz ? (int)Math.Min(argsz, 24u) : argsz >= 20 ? 20 : 16;
        VfioSim sim = VfioPciRig.Builder(SchedulerMode.Real).UseProfile(kernel).AddVfioPci().Build();
        var rig = new VfioPciRig(sim);
        Runs.AssertPassed(sim.Run(() =>
        {
            (_, _, int d) = rig.Open(VfioPciRig.Edu);
            byte[] buf = new byte[48];
            Array.Fill(buf, Sentinel);
            BitConverter.TryWriteBytes(buf.AsSpan(0), argsz);
            Assert.That(rig.P.Ioctl(d, VfioIoctl.DeviceGetInfo, buf), Is.Zero, ErrorReason.Current);
            Assert.Multiple(() =>
            {
                Assert.That(BitConverter.ToUInt32(buf, 0), Is.EqualTo(argsz), "argsz: no caps, left alone");
                Assert.That((VfioDeviceFlags)BitConverter.ToUInt32(buf, 4) & VfioDeviceFlags.Pci, Is.EqualTo(VfioDeviceFlags.Pci), "flags: PCI");
                Assert.That((BitConverter.ToUInt32(buf, 8), BitConverter.ToUInt32(buf, 12)), Is.EqualTo((9u, 5u)), "regions, irqs");
                Assert.That(buf.AsSpan(16, copied - 16).ToArray(), Has.All.Zero, $"cap_offset (and pad) within the {copied} bytes copied back");
                Assert.That(buf.AsSpan(copied).ToArray(), Has.All.EqualTo(Sentinel), $"nothing past byte {copied} is written");
            });
        }));
    }
}
