//! The arithmetic of a scenario: how many bots a run needs and how many sends, acks and
//! deliveries it owes, checked against overflow once so that nothing later can overflow.

use anyhow::{Context, bail};

/// The shape of one run (the same for every transport).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub rooms: u32,
    pub users_per_room: u32,
    /// Unmeasured messages each user sends first.
    pub warmup: u32,
    /// Measured messages each user sends after the warmup.
    pub messages: u32,
}

impl Plan {
    /// A plan whose totals all fit (sends plus deliveries in a `u64`, bots in a `usize`).
    pub fn new(
        rooms: u32,
        users_per_room: u32,
        warmup: u32,
        messages: u32,
    ) -> anyhow::Result<Plan> {
        let plan = Plan {
            rooms,
            users_per_room,
            warmup,
            messages,
        };
        if rooms == 0 || users_per_room == 0 || messages == 0 {
            bail!("a scenario needs at least one room, one user per room and one message");
        }
        warmup
            .checked_add(messages)
            .context("--warmup plus --messages is too large")?;
        usize::try_from(plan.bots()).context("too many bots for this machine")?;
        plan.bots()
            .checked_mul(u64::from(plan.sends_per_bot()))
            .and_then(|sends| sends.checked_mul(u64::from(users_per_room) + 1))
            .context("the scenario is too large to count")?;
        Ok(plan)
    }

    /// Bots (users) in all rooms.
    pub fn bots(&self) -> u64 {
        u64::from(self.rooms) * u64::from(self.users_per_room)
    }

    /// Messages each bot sends, warmup included.
    pub fn sends_per_bot(&self) -> u32 {
        self.warmup.saturating_add(self.messages)
    }

    /// Messages all bots send.
    pub fn sends(&self) -> u64 {
        self.bots().saturating_mul(u64::from(self.sends_per_bot()))
    }

    /// Deliveries owed: every message to every member of its room, its author included.
    pub fn deliveries(&self) -> u64 {
        self.sends().saturating_mul(u64::from(self.users_per_room))
    }

    /// The room (0-based) of bot number `bot`: bots fill the rooms in turn.
    pub fn room_of(&self, bot: usize) -> usize {
        bot / self.users_per_room as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_a_scenario_owes() {
        let plan = Plan::new(2, 3, 2, 10).unwrap();
        assert_eq!(plan.bots(), 6);
        assert_eq!(plan.sends_per_bot(), 12);
        assert_eq!(plan.sends(), 72);
        // Each of the 72 messages reaches the 3 members of its room, the author included.
        assert_eq!(plan.deliveries(), 216);
        assert_eq!(
            (plan.room_of(0), plan.room_of(2), plan.room_of(3)),
            (0, 0, 1)
        );

        let default = Plan::new(4, 8, 0, 100).unwrap();
        assert_eq!((default.sends(), default.deliveries()), (3_200, 25_600));
        let single = Plan::new(1, 1, 0, 1).unwrap();
        assert_eq!((single.sends(), single.deliveries()), (1, 1));
    }

    #[test]
    fn refuses_empty_and_uncountable_scenarios() {
        assert!(Plan::new(0, 8, 0, 100).is_err());
        assert!(Plan::new(4, 0, 0, 100).is_err());
        assert!(Plan::new(4, 8, 5, 0).is_err());
        assert!(Plan::new(1, 1, u32::MAX, 1).is_err());
        assert!(Plan::new(u32::MAX, u32::MAX, 0, u32::MAX).is_err());
    }
}
