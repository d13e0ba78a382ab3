//! The simulated provider's assistants: kept in memory, always available, for the demo and tests.

use crate::{AssistantProvider, ProviderAssistant, ProviderError};
use domain::{AssistantConfig, ProviderKind};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

#[derive(Clone, Debug, Default)]
pub struct SimulatedAssistants {
    assistants: Arc<Mutex<HashMap<String, ProviderAssistant>>>,
}

impl SimulatedAssistants {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, ProviderAssistant>) -> T) -> T {
        // a poisoned map only means a panicking test thread; its data is still whole
        f(&mut self.assistants.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl AssistantProvider for SimulatedAssistants {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Simulator
    }

    async fn create_assistant(&self, name: &str, config: &AssistantConfig) -> Result<String, ProviderError> {
        let id = format!("sim_asst_{}", uuid::Uuid::now_v7().simple());
        let assistant = ProviderAssistant { id: id.clone(), name: name.into(), config: config.clone() };
        self.with(|m| m.insert(id.clone(), assistant));
        Ok(id)
    }

    async fn get_assistant(&self, id: &str) -> Result<ProviderAssistant, ProviderError> {
        self.with(|m| m.get(id).cloned()).ok_or_else(|| ProviderError::NotFound { provider: "simulator", id: id.into() })
    }

    async fn update_assistant(&self, id: &str, name: &str, config: &AssistantConfig) -> Result<(), ProviderError> {
        self.with(|m| match m.get_mut(id) {
            Some(a) => {
                a.name = name.into();
                a.config = config.clone();
                Ok(())
            }
            None => Err(ProviderError::NotFound { provider: "simulator", id: id.into() }),
        })
    }
}
