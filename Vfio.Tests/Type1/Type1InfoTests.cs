// Conformance of VFIO_IOMMU_GET_INFO and CHECK_EXTENSION in the type1 backend against
// the peer cases (docs/conformance.md) CG-02, CG-13, CG-25, CG-26, T1-28 and BI-05: the fixed
// part, the capability chain (MIGRATION, DMA_AVAIL, IOVA_RANGE in that order) and its
// values, the argsz protocol never writing past argsz, and the extension answers. The
// per-profile layout and copy-back size match the real kernels: TYPE1v2 GET_INFO argsz 116
// with IOVA_RANGE at 68 on 6.1, 120 and 72 on 6.12.118; DMA_CC_IOMMU 0 on both under QEMU's
// intel-iommu (coherent, no snoop control).

using System.Runtime.InteropServices;
using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Iommu.Type1;
using Vfio.Kernel;
using Vfio.Platform.Iommu;
using Vfio.Platform.Machine;
using Vfio.Tests.Core;

namespace Vfio.Tests.Type1;

[TestFixture]
public sealed class Type1InfoTests
{
    private const ulong Page = Type1Rig.Page;

    [Test]
    public void CG_02_CheckExtensionBeforeSetIommu_AsksTheRegisteredBackend()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            rig.Core.Bind(VfioRig.Edu);
            int c = rig.Core.OpenContainer();
            Assert.That(rig.CheckExtension(c, VfioExtension.Type1v2), Is.EqualTo(1), "with no group");
            int g = rig.Core.OpenGroup(VfioRig.Edu);
            Assert.That(rig.Core.SetContainer(g, c), Is.Zero, ErrorReason.Current);
            Assert.That(rig.CheckExtension(c, VfioExtension.Type1v2), Is.EqualTo(1));
            Assert.That(rig.CheckExtension(c, VfioExtension.Type1), Is.EqualTo(1));
            Assert.That(rig.CheckExtension(c, VfioExtension.UnmapAll), Is.EqualTo(1));
            Assert.That(rig.CheckExtension(c, VfioExtension.DmaCcIommu), Is.Zero, "no instance yet");
            Assert.That(rig.CheckExtension(c, VfioExtension.UpdateVaddr), Is.Zero, "no instance yet");
        });
    }

    [Test]
    public void CG_13_CheckExtensionAfterSetIommu_AnswersForTheInstance([Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type)
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(type);
            Assert.That(rig.CheckExtension(c, VfioExtension.Type1), Is.EqualTo(1));
            Assert.That(rig.CheckExtension(c, VfioExtension.Type1v2), Is.EqualTo(1));
            Assert.That(rig.CheckExtension(c, VfioExtension.UnmapAll), Is.EqualTo(1));
            Assert.That(rig.CheckExtension(c, VfioExtension.UpdateVaddr), Is.EqualTo(1), "no emulated group");
            Assert.That(rig.CheckExtension(c, VfioExtension.DmaCcIommu), Is.EqualTo(1), "the only domain enforces coherency");
            Assert.That(rig.CheckExtension(c, VfioExtension.SpaprTce), Is.Zero);
            Assert.That(rig.CheckExtension(c, VfioExtension.NoIommu), Is.Zero);
            Assert.That(rig.CheckExtension(c, 0x1234), Is.Zero, "unknown extension");
        });
    }

    [Test]
    public void Type1Nesting_IsOfferedOnEveryProfile_AndOpensAV2Instance([Values("linux-6.12", "linux-6.1")] string profile)
    {
        // v6.13 removed VFIO_TYPE1_NESTING_IOMMU; both profiles predate that.
        var rig = new Type1Rig(profile: KernelProfile.Parse(profile));
        rig.Run(() =>
        {
            int probe = rig.Core.OpenContainer();
            Assert.That(rig.CheckExtension(probe, VfioExtension.Type1Nesting), Is.EqualTo(1), "before SET_IOMMU");
            rig.User.Close(probe);
            (int c, _, _) = rig.OpenEdu(VfioExtension.Type1Nesting);
            Assert.That(rig.CheckExtension(c, VfioExtension.Type1Nesting), Is.EqualTo(1));
            Assert.That(rig.Iommu(c).Nesting, Is.True);
            Assert.That(rig.Iommu(c).V2, Is.True);
        });
    }

    [Test]
    public void CG_13_UpdateVaddrIsNotOfferedWithAnEmulatedGroup_AndDmaCcIommuIsOneWithoutDomains()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _) = Type1AttachTests.OpenEmulated(rig);
            Assert.That(rig.CheckExtension(c, VfioExtension.UpdateVaddr), Is.Zero);
            Assert.That(rig.CheckExtension(c, VfioExtension.DmaCcIommu), Is.EqualTo(1), "every one of no domains is coherent");
            Assert.That(rig.CheckExtension(c, VfioExtension.UnmapAll), Is.EqualTo(1));
        });
    }

    [Test]
    public void CG_13_DmaCcIommuIsZeroWhenTheOnlyDomainCannotEnforceCoherency()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            rig.Core.Dev(VfioRig.Edu).IommuGroup!.NoSnoopControl = true;
            (int c, _, _) = rig.OpenEdu();
            Assert.That(rig.CheckExtension(c, VfioExtension.DmaCcIommu), Is.Zero);
        });
    }

    [Test]
    public void T1_28_GetInfo_ReportsPgsizesAndCapsInOrderWithTheirValues([Values(VfioExtension.Type1, VfioExtension.Type1v2)] uint type)
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu(type);
            ulong va = rig.Buffer(2 * Page);
            Assert.That(rig.Map(c, va, 0x100000, 2 * Page), Is.Zero, ErrorReason.Current);
            byte[] buf = rig.GetFullInfo(c);
            VfioIommuType1Info info = MemoryMarshal.Read<VfioIommuType1Info>(buf);
            Assert.That(info.Flags, Is.EqualTo(VfioType1Flags.InfoPgsizes | VfioType1Flags.InfoCaps));
            Assert.That(info.IovaPgsizes, Is.EqualTo(rig.Iommu(c).PgsizeBitmap));
            Assert.That(info.IovaPgsizes & Page, Is.EqualTo(Page), "PAGE_SIZE is a supported page size");
            Assert.That(info.IovaPgsizes & (Page - 1), Is.Zero, "sub-page sizes are hidden");
            Assert.That(info.IovaPgsizes & (1UL << 21), Is.Not.Zero, "2 MiB pages of the IOMMU are reported");
            Assert.That(info.CapOffset, Is.EqualTo(24u));

            List<InfoCap> caps = Type1Checks.Caps(buf, info.Argsz);
            Assert.That(caps.Select(x => x.Id), Is.EqualTo(new[] { VfioCapId.Type1Migration, VfioCapId.Type1DmaAvail, VfioCapId.Type1IovaRange }));
            Assert.That(caps.Select(x => x.Version), Is.All.EqualTo(1));

            VfioIommuType1InfoCapMigration mig = MemoryMarshal.Read<VfioIommuType1InfoCapMigration>(buf.AsSpan(caps[0].Offset));
            Assert.That(mig.Flags, Is.Zero);
            Assert.That(mig.PgsizeBitmap, Is.EqualTo(Page), "the minimum page size");
            Assert.That(mig.MaxDirtyBitmapSize, Is.EqualTo(256UL << 20));
            Assert.That(Type1Checks.DmaAvailCap(buf), Is.EqualTo(VfioIommuType1.DefaultDmaEntryLimit - 1));

            List<(ulong Start, ulong End)> ranges = Type1Checks.IovaRanges(buf);
            Assert.That(ranges, Is.EqualTo(rig.Iommu(c).IovaList.Select(r => (r.Start, r.End)).ToList()));
            Assert.That(ranges, Has.None.Matches<(ulong Start, ulong End)>(r => r.Start <= 0xfee00000 && r.End >= 0xfee00000), "the MSI window is not usable");
            Assert.That(info.Argsz, Is.EqualTo((uint)(caps[2].Offset + 16 + (16 * ranges.Count))), "argsz covers the chain exactly");
        });
    }

    [Test]
    public void T1_28_GetInfoOfAnEmulatedOnlyContainer_OmitsIovaRange()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _) = Type1AttachTests.OpenEmulated(rig);
            byte[] buf = rig.GetFullInfo(c);
            VfioIommuType1Info info = MemoryMarshal.Read<VfioIommuType1Info>(buf);
            Assert.That(Type1Checks.Caps(buf, info.Argsz).Select(x => x.Id), Is.EqualTo(new[] { VfioCapId.Type1Migration, VfioCapId.Type1DmaAvail }));
            Assert.That(info.IovaPgsizes, Is.EqualTo(~(Page - 1)), "PAGE_MASK until a domain exists");
        });
    }

    [Test]
    public void T1_28_BI_05_GetInfoWithArgsz16_FillsTheFixedPartOnly_AndArgsz15IsEinval()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            byte[] buf = new byte[64];
            rig.AssertRejected(c, Errno.EINVAL, () => rig.GetInfo(c, buf, VfioIommuType1Info.MinSz - 1));
            Array.Fill(buf, (byte)0xAA);
            Assert.That(rig.GetInfo(c, buf, VfioIommuType1Info.MinSz), Is.Zero, ErrorReason.Current);
            Assert.That(MemoryMarshal.Read<uint>(buf.AsSpan(4)), Is.EqualTo(VfioType1Flags.InfoPgsizes | VfioType1Flags.InfoCaps));
            Assert.That(MemoryMarshal.Read<ulong>(buf.AsSpan(8)), Is.EqualTo(rig.Iommu(c).PgsizeBitmap));
            Assert.That(buf.Skip(16), Is.All.EqualTo((byte)0xAA), "nothing past argsz is written");
        });
    }

    [Test]
    public void CG_25_GetInfoArgszSweep_NeverWritesPastArgsz_AndEveryChainInsideArgszIsWellFormed()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            ulong va = rig.Buffer(Page);
            Assert.That(rig.Map(c, va, 0x100000, Page), Is.Zero, ErrorReason.Current);
            uint full = (uint)rig.GetFullInfo(c).Length;
            byte[] buf = new byte[full + 64];
            foreach (uint argsz in new[] { 16u }.Concat(Enumerable.Range(24, (int)full - 24 + 1).Select(x => (uint)x)))
            {
                Array.Fill(buf, (byte)0xAA);
                Assert.That(rig.GetInfo(c, buf, argsz), Is.Zero, $"argsz {argsz}: {ErrorReason.Current}");
                int firstUntouched = Array.FindIndex(buf, (int)argsz, b => b != 0xAA);
                Assert.That(firstUntouched, Is.EqualTo(-1), $"argsz {argsz}: byte {firstUntouched} past argsz was written");
                VfioIommuType1Info info = MemoryMarshal.Read<VfioIommuType1Info>(buf);
                Assert.That(info.Argsz, Is.EqualTo(full), $"argsz {argsz}: the needed size is reported");
                if (argsz >= 24)
                {
                    Assert.That(info.CapOffset, Is.EqualTo(argsz >= full ? 24u : 0u), $"argsz {argsz}: cap_offset");
                    if (info.CapOffset != 0)
                    {
                        Assert.That(Type1Checks.Caps(buf, argsz), Has.Count.EqualTo(3));
                    }
                }
            }
        });
    }

    [Test]
    public void CG_26_IovaRanges_AreSortedNonOverlappingAndNonEmpty_AlsoWithTwoDomains()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            CheckRanges(Type1Checks.IovaRanges(rig.GetFullInfo(c)));
            rig.Core.Dev(VfioRig.PairF0).IommuGroup!.NoSnoopControl = true;
            rig.Core.Bind(VfioRig.PairF0);
            rig.Core.Bind(VfioRig.PairF1);
            int g = rig.Core.OpenGroup(VfioRig.PairF0);
            Assert.That(rig.Core.SetContainer(g, c), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Iommu(c).Domains, Has.Count.EqualTo(2));
            CheckRanges(Type1Checks.IovaRanges(rig.GetFullInfo(c)));
        });

        static void CheckRanges(List<(ulong Start, ulong End)> ranges)
        {
            Assert.That(ranges, Is.Not.Empty);
            for (int i = 0; i < ranges.Count; i++)
            {
                Assert.That(ranges[i].Start, Is.LessThan(ranges[i].End), $"range {i} is not empty");
                if (i > 0)
                {
                    Assert.That(ranges[i - 1].End, Is.LessThan(ranges[i].Start), $"range {i} starts after range {i - 1} ends");
                }
            }
        }
    }

    [Test]
    public void GetInfoOfAType1v2Container_LaysTheChainOutAsTheProfileDoes_Argsz116On61_120On612([Values("linux-6.12", "linux-6.1")] string profile)
    {
        KernelProfile kernel = KernelProfile.Parse(profile);
        bool aligned = kernel.Has(Vfio.Core.VfioCoreFeatures.InfoCapsAlignedTo8);
        Assert.That(aligned, Is.EqualTo(kernel == KernelProfile.Linux6_12), "v6.6 aligned the chain");
        var rig = new Type1Rig(profile: kernel);
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            byte[] buf = rig.GetFullInfo(c);
            VfioIommuType1Info info = MemoryMarshal.Read<VfioIommuType1Info>(buf);
            List<InfoCap> caps = Type1Checks.Caps(buf, info.Argsz);
            int ranges = rig.Iommu(c).IovaList.Count;
            Assert.That(ranges, Is.EqualTo(2), "the default machine's IOVA space is split by the MSI window");

            // 24 fixed + MIGRATION 32 + DMA_AVAIL 12 (16 aligned) + IOVA_RANGE 16 + 16 per range.
            int dmaAvail = aligned ? 16 : 12;
            Assert.Multiple(() =>
            {
                Assert.That(info.Argsz, Is.EqualTo(aligned ? 120u : 116u));
                Assert.That(caps.Select(x => x.Offset), Is.EqualTo(new[] { 24, 56, 56 + dmaAvail }));
                Assert.That(Type1Checks.DmaAvailCap(buf), Is.EqualTo(VfioIommuType1.DefaultDmaEntryLimit));
                Assert.That(Type1Checks.IovaRanges(buf), Is.EqualTo(rig.Iommu(c).IovaList.Select(r => (r.Start, r.End)).ToList()), "the ranges read right at either layout");
                if (aligned)
                {
                    Assert.That(buf.AsSpan(68, 4).ToArray(), Has.All.Zero, "the padding after DMA_AVAIL is zero");
                }
            });
        });
    }

    [Test]
    public void GetInfo_CopiesBackWhatTheProfileCopies_AndLeavesTheRestOfTheCallersBytes(
        [Values("linux-6.12", "linux-6.1")] string profile,
        [Values(16u, 18u, 20u, 22u, 24u, 32u)] uint argsz)
    {
        KernelProfile kernel = KernelProfile.Parse(profile);
        bool upToArgsz = kernel.Has(Vfio.Core.VfioCoreFeatures.InfoCopiesBackUpToArgsz);
        Assert.That(upToArgsz, Is.EqualTo(kernel == KernelProfile.Linux6_12));

        // v6.6+: min(argsz, 24) bytes of a zeroed struct; 6.1: 20 bytes from argsz 20 on (cap_offset 0), else 16.
        int copied = upToArgsz ? (int)Math.Min(argsz, 24u) : argsz >= 20 ? 20 : 16;
        var rig = new Type1Rig(profile: kernel);
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            byte[] buf = new byte[64];
            Array.Fill(buf, (byte)0xAA);
            Assert.That(rig.GetInfo(c, buf, argsz), Is.Zero, ErrorReason.Current);
            Assert.Multiple(() =>
            {
                Assert.That(MemoryMarshal.Read<ulong>(buf.AsSpan(8)), Is.EqualTo(rig.Iommu(c).PgsizeBitmap));
                Assert.That(buf.AsSpan(16, copied - 16).ToArray(), Has.All.Zero, $"cap_offset (and pad) within the {copied} bytes copied back: the chain did not fit");
                Assert.That(buf.AsSpan(copied).ToArray(), Has.All.EqualTo((byte)0xAA), $"nothing past byte {copied} is written");
            });
        });
    }

    [Test]
    public void CG_13_OnACoherentIommuWithoutSnoopControl_DevicesBindAndMap_ButDmaCcIommuIsZero([Values("linux-6.12", "linux-6.1")] string profile)
    {
        // QEMU's intel-iommu: IOMMU_CAP_CACHE_COHERENCY, but no snoop control (the real 6.1 answers 0 there).
        MachineDescription qemu = MachineDescriptionReader.Default with { Iommu = new IommuHardwareConfig { SnoopControl = false } };
        var rig = new Type1Rig(profile: KernelProfile.Parse(profile), machine: qemu);
        rig.Run(() =>
        {
            (int c, _, _) = rig.OpenEdu();
            ulong va = rig.Buffer(2 * Page);
            Assert.That(rig.Map(c, va, 0x100000, 2 * Page), Is.Zero, ErrorReason.Current);
            Assert.That(rig.CheckExtension(c, VfioExtension.DmaCcIommu), Is.Zero);
            Assert.That(rig.Iommu(c).Domains.Single().EnforcesCacheCoherency, Is.False);
            rig.AssertInvariants(c);
        });
    }
}
